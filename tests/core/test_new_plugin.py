"""``ebmcore new-plugin`` writes a distribution that installs, passes its own tests and trains."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from ebmcore.cli import main
from ebmcore.scaffold import SCAFFOLD_KINDS, PluginNames, parse_kinds, render_plugin, write_plugin
from ebmcore.testing import child_venv


def test_names_are_derived_once():
    for given in ("toy", "Toy", "ebmcore-toy", "ebmcore_toy"):
        names = PluginNames.from_name(given)
        assert (names.plugin, names.distribution, names.package) == (
            "toy", "ebmcore-toy", "ebmcore_toy")
    assert PluginNames.from_name("my-flows").component("model") == "my_flows_mlp"
    for bad in ("", "9lives", "a b", "ebmcore-"):
        with pytest.raises(ValueError, match="name must be"):
            PluginNames.from_name(bad)


def test_kinds_are_parsed_in_contract_order():
    assert parse_kinds(None) == SCAFFOLD_KINDS
    assert parse_kinds("dataset, Loss") == ("loss", "dataset")
    with pytest.raises(ValueError, match="unknown kind.*flow"):
        parse_kinds("energy,flow")
    with pytest.raises(ValueError, match="at least one"):
        parse_kinds(" , ")


def test_only_the_chosen_kinds_are_written():
    files = render_plugin(PluginNames.from_name("toy"), ("loss", "dataset"))
    assert set(files) == {
        "pyproject.toml", "README.md", "src/ebmcore_toy/__init__.py", "tests/conftest.py",
        "src/ebmcore_toy/loss.py", "src/ebmcore_toy/dataset.py", "tests/test_loss.py",
        "tests/test_dataset.py", "tests/test_plugin.py"}
    root = files["src/ebmcore_toy/__init__.py"]
    assert "def ebmcore_losses" in root and "def ebmcore_datasets" in root
    assert "def ebmcore_models" not in root and "def ebmcore_energies" not in root
    # without its own model and sampler, the data set's recipe names the built-in ones
    assert '"model": {"name": "mlp"' in root and '"name": "toy_dsm"' in root
    assert '[project.entry-points.ebmcore]\ntoy = "ebmcore_toy"' in files["pyproject.toml"]
    for path, text in files.items():
        if path.endswith(".py"):
            ast.parse(text, filename=path)  # every generated module is valid Python
            assert "${" not in text, path


def test_an_existing_project_is_not_overwritten(tmp_path):
    project = write_plugin("toy", kinds="energy", directory=tmp_path)
    assert (project / "src/ebmcore_toy/energy.py").is_file()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_plugin("toy", kinds="energy", directory=tmp_path)
    write_plugin("toy", kinds="energy,sampler", directory=tmp_path, overwrite=True)
    assert (project / "src/ebmcore_toy/sampler.py").is_file()


def test_cli_writes_the_plugin_and_names_flags_in_errors(tmp_path, capsys):
    assert main(["new-plugin", "toy", "--kinds", "model", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "toy_mlp" in out and "pip install -e" in out
    assert (tmp_path / "ebmcore-toy/src/ebmcore_toy/model.py").is_file()
    assert main(["new-plugin", "toy", "--kinds", "model", "--dir", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["new-plugin", "other", "--kinds", "flows", "--dir", str(tmp_path)]) == 1
    assert "--kinds: unknown kind(s) flows" in capsys.readouterr().err


# -- the generated plugin, installed -------------------------------------------------------

def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EBMCORE_") and k not in ("PYTHONPATH", "PIP_CONSTRAINT")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", EBMCORE_THREADS="1")
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_generated_plugin_installs_passes_its_tests_and_trains(tmp_path):
    project = write_plugin("toy", directory=tmp_path)
    python = child_venv(tmp_path / "venv")
    done = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                 "--no-index", str(project)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    # its tests run against the installed wheel, not the source tree
    tests = tmp_path / "tests"
    (project / "tests").rename(tests)
    done = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout

    names = PluginNames.from_name("toy")
    out = tmp_path / "run"
    done = _run([str(python), "-m", "ebmcore", "train",
                 "--dataset", names.component("dataset"), "--model", names.component("model"),
                 "--loss", names.component("loss"), "--set", "train.steps=20",
                 "--set", "sample.n_chains=200", "--set", "sample.burn_in=50",
                 "--set", "sample.n_steps=50", "--set", "evaluate.n_test=2000",
                 "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "metrics.json").is_file() and (out / "model.pt").is_file()


def test_flow_kinds_are_written_and_pass_the_conformance_kit(tmp_path, ebmcore_registry,
                                                             monkeypatch):
    """The interpolant, coupling and integrator templates: registered by their hooks, found
    by name, and each passing its kind's checks (what their generated tests run)."""
    import importlib

    import torch

    import ebmcore
    from ebmcore.testing import check_coupling, check_integrator, check_interpolant

    project = write_plugin("flowkit", kinds="interpolant,coupling,integrator",
                           directory=tmp_path)
    monkeypatch.syspath_prepend(str(project / "src"))
    package = importlib.import_module("ebmcore_flowkit")
    ebmcore_registry.register(package, name="flowkit")
    path = ebmcore.create("interpolant", "flowkit_power", power=3.0)
    check_interpolant(path)
    coupling = ebmcore.create("coupling", "flowkit:flowkit_greedy")
    check_coupling(coupling)
    integrator = ebmcore.create("integrator", "flowkit_ralston", steps=40)
    check_integrator(integrator, order=2)
    assert integrator.integrate(lambda x, t: -x, torch.ones(2), 0.0, 1.0).nfe == 80
    tests = {p.name for p in (project / "tests").iterdir()}
    assert {"test_interpolant.py", "test_coupling.py", "test_integrator.py"} <= tests
