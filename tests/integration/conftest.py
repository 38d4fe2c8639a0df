"""A throw-away environment with ebmcore and plugins installed from wheels.

One session fixture builds wheels of ebmcore (from a copy of the repository), of the example
plugin and of every fixture distribution under tests/fixtures/, creates ONE virtual environment
and installs ebmcore and the example plugin into it. Each fixture plugin is installed with
``pip install --target`` into its own directory, so a scenario "installs" a fixture by putting
that directory on ``PYTHONPATH`` of a subprocess: entry points are found through the same
``*.dist-info`` scan either way, and no scenario leaves state behind for the next.

Why the environment is built this way:

* No build isolation and ``--no-index`` everywhere: an isolated build would make pip download
  setuptools each time, and any resolver run could pull a multi-GB torch. Everything is
  installed with ``--no-deps``.
* The venv sees the test process's own packages (torch, numba, pluggy, ...) through a ``.pth``
  file that calls ``site.addsitedir`` on them, instead of ``--system-site-packages``: under tox
  torch lives in the tox environment, not in the base interpreter that ``--system-site-packages``
  would expose. Nothing heavy is ever installed.
* The venv gets its own ebmcore from the wheel, not the editable checkout: the wheel is what
  users install, so these tests also check that it carries every built-in plugin and its entry
  points. The venv's site-packages comes first on ``sys.path``, ahead of the parent's, and an
  editable finder is appended to ``sys.meta_path`` after the path finder, so the wheel wins;
  ``importlib.metadata`` likewise keeps the first ``ebmcore`` distribution on ``sys.path``.
  ``test_the_wheels_are_what_runs`` checks this rather than trusting it.
* Subprocesses run in an empty directory, so the repository root (``''`` on ``sys.path`` for
  ``python -c``) can never shadow the installed packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ebmcore.testing import child_venv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ebmcore-example-plugin"
FIXTURES = ROOT / "tests" / "fixtures"

#: Scenario name of each fixture plugin -> (directory under tests/fixtures, distribution).
FIXTURE_DIRS = {
    "broken": ("broken-plugin", "ebmcore-fixture-broken"),
    "dup-a": ("dup-a", "ebmcore-fixture-dup-a"),
    "dup-b": ("dup-b", "ebmcore-fixture-dup-b"),
    "incompatible": ("incompatible-plugin", "ebmcore-fixture-incompatible"),
    "replacing": ("replacing-plugin", "ebmcore-fixture-replacing"),
    "flows": ("flows-plugin", "ebmcore-fixture-flows"),
}

_IGNORE_NAMES = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
_IGNORE = shutil.ignore_patterns(*_IGNORE_NAMES)

#: Prepended to every probe: helpers that turn outcomes into JSON-ready data.
_PRELUDE = textwrap.dedent("""
    import json
    import sys

    import ebmcore


    def attempt(fn):
        try:
            return {"ok": True, "value": fn()}
        except Exception as exc:
            return {"ok": False, "type": type(exc).__name__, "message": str(exc)}


    def records():
        return {r.name: r.to_dict() for r in ebmcore.plugins()}
""")


def _pip(python: Path | str, *args: str | Path) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("PIP_CONSTRAINT", None)  # constraints would make pip resolve; nothing is resolved
    done = subprocess.run([str(python), "-m", "pip", *map(str, args)], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")


def _copy_ebmcore_source(dest: Path) -> Path:
    # Build from a copy: an in-tree build would write build/ and *.egg-info into the shared
    # checkout while other processes may be using it.
    dest.mkdir()
    for name in ("ebmcore", "plugins"):
        shutil.copytree(ROOT / name, dest / name, ignore=_IGNORE)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    readme = ROOT / "README.md"
    if readme.exists():
        shutil.copy2(readme, dest / "README.md")
    else:  # pyproject names a readme; its text is not what these tests are about
        (dest / "README.md").write_text("ebmcore\n")
    return dest


@dataclass
class PluginEnv:
    """The installed environment and helpers to run code in it.

    Attributes:
        venv: The virtual environment's directory.
        python: Its interpreter.
        fixture_paths: Scenario name -> directory holding that fixture plugin's install.
        workdir: An empty directory subprocesses run in.
    """

    venv: Path
    python: Path
    fixture_paths: dict[str, Path]
    workdir: Path
    wheels: dict[str, Path] = field(default_factory=dict)

    def environ(self, fixtures: tuple[str, ...] = (), env: dict[str, str] | None = None
                ) -> dict[str, str]:
        """Return a clean environment with ``fixtures`` installed and ``env`` switches set."""
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("EBMCORE_") and k not in ("PYTHONPATH", "PYTHONHOME")}
        unknown = set(fixtures) - set(self.fixture_paths)
        if unknown:
            raise KeyError(f"unknown fixture plugins {sorted(unknown)}")
        if fixtures:
            base["PYTHONPATH"] = os.pathsep.join(str(self.fixture_paths[f]) for f in fixtures)
        base.update(env or {})
        return base

    def run(self, args: list[str], fixtures: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``args`` (a venv executable name first, e.g. ``"ebmcore"``) in the venv."""
        exe = self.venv / "bin" / args[0]
        return subprocess.run([str(exe), *args[1:]], capture_output=True, text=True,
                              cwd=self.workdir, env=self.environ(fixtures, env), timeout=120)

    def probe(self, code: str, fixtures: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> Any:
        """Run ``code`` after :data:`_PRELUDE`; return the JSON its last output line holds."""
        done = self.run(["python", "-c", _PRELUDE + textwrap.dedent(code)], fixtures, env)
        if done.returncode != 0:
            raise AssertionError(f"probe failed ({done.returncode}):\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def cli_json(self, args: list[str], fixtures: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> Any:
        """Run ``ebmcore ARGS`` and parse its JSON output."""
        done = self.run(["ebmcore", *args], fixtures, env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> PluginEnv:
    """Build the wheels, create the venv and install everything (about 20-40 s, once)."""
    top = tmp_path_factory.mktemp("plugin-env")
    sources = top / "src"
    sources.mkdir()
    # scenario name -> (project directory, distribution name)
    projects = {"ebmcore": (_copy_ebmcore_source(sources / "ebmcore"), "ebmcore"),
                "example": (sources / "example", "ebmcore-example-plugin")}
    shutil.copytree(EXAMPLE, sources / "example",
                    ignore=shutil.ignore_patterns(*_IGNORE_NAMES, "tests"))
    for key, (dirname, dist) in FIXTURE_DIRS.items():
        projects[key] = (sources / dirname, dist)
        shutil.copytree(FIXTURES / dirname, sources / dirname, ignore=_IGNORE)

    wheel_dir = top / "wheels"
    _pip(sys.executable, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", wheel_dir, *(path for path, _ in projects.values()))
    wheels = {}
    for key, (_, dist) in projects.items():
        # Wheel file names carry the distribution name with '-' written as '_'.
        found = sorted(wheel_dir.glob(f"{dist.replace('-', '_')}-*.whl"))
        if len(found) != 1:
            raise RuntimeError(f"expected one wheel of {dist} in {wheel_dir}, found {found}")
        wheels[key] = found[0]

    venv = top / "venv"
    python = child_venv(venv, pth_name="_ebmcore_test_parent_env.pth")

    # --ignore-installed: the parent's ebmcore (often an editable checkout) is visible to pip;
    # the venv must get its own copy without pip trying to uninstall the parent's.
    _pip(python, "install", "--no-deps", "--no-index", "--ignore-installed",
         wheels["ebmcore"], wheels["example"])
    fixture_paths = {}
    for key in FIXTURE_DIRS:
        fixture_paths[key] = top / "fixtures" / key
        _pip(python, "install", "--no-deps", "--no-index", "--target", fixture_paths[key],
             wheels[key])

    workdir = top / "work"
    workdir.mkdir()
    return PluginEnv(venv=venv, python=python, fixture_paths=fixture_paths, workdir=workdir,
                     wheels=wheels)

