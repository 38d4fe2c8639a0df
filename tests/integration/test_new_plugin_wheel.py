"""``ebmcore new-plugin`` works from the installed wheel: its templates ship as package data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # shares the session's wheels and venv (~30 s to build)


def test_new_plugin_from_the_wheel_writes_every_module(plugin_env):
    target = plugin_env.workdir / "scaffold"
    done = plugin_env.run(["ebmcore", "new-plugin", "wheelcheck", "--dir", str(target)])
    assert done.returncode == 0, done.stderr
    project = target / "ebmcore-wheelcheck"
    for kind in ("energy", "sampler", "loss", "model", "dataset"):
        assert (project / "src" / "ebmcore_wheelcheck" / f"{kind}.py").is_file(), kind
        assert (project / "tests" / f"test_{kind}.py").is_file(), kind
    assert 'wheelcheck = "ebmcore_wheelcheck"' in (project / "pyproject.toml").read_text()
