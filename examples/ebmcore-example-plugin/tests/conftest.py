"""Make the plugin importable when its tests run from a source checkout.

An installed plugin (``pip install -e .`` or a wheel) is used as is; otherwise ``src/`` goes on
``sys.path`` so that ``pytest examples/ebmcore-example-plugin/tests`` works without installing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("ebmcore_example_plugin") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
