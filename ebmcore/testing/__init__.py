"""Helpers for testing ebmcore plugins, also loaded as a pytest plugin (entry point ``pytest11``).

- :func:`isolated_registry`: a fresh, empty registry made active inside a ``with`` block.
- ``ebmcore_registry``: the same as a pytest fixture.
- :func:`check_energy` and :func:`check_sampler`: conformance checks for plugin authors.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from ebmcore.registry import Registry, use_registry

_LAZY = {
    "check_energy": "ebmcore.testing.energy_checks",
    "check_sampler": "ebmcore.testing.sampler_checks",
}

__all__ = ["isolated_registry", *_LAZY]


@contextlib.contextmanager
def isolated_registry(*, entry_points: bool = False) -> Iterator[Registry]:
    """Make a fresh registry active for the duration of a ``with`` block.

    Args:
        entry_points: Also discover installed plugins. By default the registry starts empty
            and a test adds plugin objects with ``registry.register(obj, name=...)``.
    """
    with use_registry(Registry(entry_points=entry_points)) as registry:
        yield registry


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ebmcore.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
