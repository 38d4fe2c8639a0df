"""The documentation site builds in strict mode (broken links, missing pages, bad references)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 10 s: mkdocstrings imports and renders every API page
def test_mkdocs_build_strict(tmp_path):
    if shutil.which("mkdocs") is None and not _has_module("mkdocs"):
        pytest.fail("mkdocs is not installed; install the docs or dev extra")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**_clean_env(), "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "architecture/index.html", "writing-a-plugin/index.html",
                 "hooks/index.html", "cli/index.html", "api/registry/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # the example plugin's source is included into the tutorial, not copied by hand
    page = (tmp_path / "site" / "writing-a-plugin" / "index.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # highlighting splits code into spans
    assert "EBMCORE_PLUGIN_API = 1" in text
    assert "class RandomWalkMetropolis(Sampler):" in text


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("EBMCORE_")}
