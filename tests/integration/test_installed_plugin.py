"""The example plugin, installed from its wheel next to an ebmcore wheel, works end to end."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds wheels and a venv once per session (~30 s)

BUILTINS = {"energies", "samplers", "losses", "models", "datasets", "flows"}
EXAMPLE_TESTS = Path(__file__).resolve().parents[2] / "examples/ebmcore-example-plugin/tests"


def test_the_wheels_are_what_runs(plugin_env):
    paths = plugin_env.probe("""
        import importlib
        mods = ["ebmcore", "ebmcore_energies", "ebmcore_samplers", "ebmcore_losses",
                "ebmcore_models", "ebmcore_datasets", "ebmcore_example_plugin"]
        print(json.dumps({m: importlib.import_module(m).__file__ for m in mods}))
    """)
    venv = plugin_env.venv.resolve()
    for module, path in paths.items():
        assert venv in Path(path).resolve().parents, f"{module} imported from {path}"


def test_cli_lists_builtins_and_example_as_active(plugin_env):
    records = {r["name"]: r for r in plugin_env.cli_json(["plugins", "--json"])}
    assert set(records) >= BUILTINS
    for name in BUILTINS:
        assert records[name]["builtin"] is True
        assert records[name]["status"] == "active", records[name]
        assert records[name]["distribution"] == "ebmcore"
    example = records["example"]
    assert example["status"] == "active", example
    assert example["builtin"] is False
    assert example["distribution"] == "ebmcore-example-plugin"
    assert example["version"] == "0.1.0"
    assert example["error"] is None
    assert example["components"] == {"energy": ["quartic_bowl", "mueller_brown"],
                                     "sampler": ["random_walk_metropolis"],
                                     "loss": ["replay_contrastive"], "model": ["rbf_energy"],
                                     "dataset": ["gaussian_cross"]}
    assert example["replaces"] == [] and example["notes"] == []
    assert set(records) == BUILTINS | {"example"}  # no fixture leaks in without PYTHONPATH


def test_cli_list_and_info_show_the_example(plugin_env):
    listing = plugin_env.cli_json(["list", "energy", "--json"])
    assert {"quartic_bowl", "mueller_brown"} <= set(listing["energy"])
    info = plugin_env.cli_json(["info", "energy", "example:quartic", "--json"])
    assert info["name"] == "quartic_bowl"
    assert info["plugin"] == "example"
    assert info["distribution"] == "ebmcore-example-plugin"
    assert info["target"] == "ebmcore_example_plugin.energies:QuarticBowl"
    params = {p["name"]: p for p in info["parameters"]}
    assert params["dim"]["default"] == "2"
    assert params["a"]["doc"].startswith("Positive scale")
    text = plugin_env.run(["ebmcore", "info", "sampler", "rwm"])
    assert text.returncode == 0, text.stderr
    assert "random_walk_metropolis" in text.stdout and "step_size" in text.stdout


def test_discovery_imports_no_torch(plugin_env):
    # Listing every plugin (built-ins and the example) must not import torch or numba.
    loaded = plugin_env.probe("""
        ebmcore.plugins()
        ebmcore.names("energy")
        print(json.dumps(sorted(m for m in ("torch", "numba") if m in sys.modules)))
    """)
    assert loaded == []


def test_create_and_sample_with_the_example_components(plugin_env):
    out = plugin_env.probe("""
        import torch
        energy = ebmcore.create("energy", "mueller_brown", beta=0.1)
        sampler = ebmcore.create("sampler", "random_walk_metropolis", step_size=0.1)
        gen = torch.Generator().manual_seed(0)
        x0 = torch.tensor([[-0.55, 1.44]]).repeat(64, 1)
        result = sampler.sample(energy, x0, n_steps=20, burn_in=5, generator=gen,
                                return_trajectory=True)
        face = ebmcore.create("energy", "quartic_bowl", dim=3).numba_face()
        print(json.dumps({
            "energy_class": type(energy).__module__ + "." + type(energy).__name__,
            "sampler_class": type(sampler).__module__ + "." + type(sampler).__name__,
            "samples": list(result.samples.shape),
            "trajectory": list(result.trajectory.shape),
            "finite": bool(torch.isfinite(result.samples).all()),
            "acceptance": float(result.diagnostics["acceptance"].mean()),
            "backend": result.diagnostics["backend"],
            "face_dim": face.dim,
            "face_params": face.params.tolist(),
        }))
    """)
    assert out["energy_class"] == "ebmcore_example_plugin.energies.MuellerBrown"
    assert out["sampler_class"] == "ebmcore_example_plugin.samplers.RandomWalkMetropolis"
    assert out["samples"] == [64, 2]
    assert out["trajectory"] == [20, 64, 2]
    assert out["finite"]
    assert 0.0 < out["acceptance"] < 1.0
    assert out["backend"] == "torch"
    assert out["face_dim"] == 3 and out["face_params"] == [1.0]


def test_misspelt_name_gets_did_you_mean(plugin_env):
    out = plugin_env.probe("""
        print(json.dumps({
            "plain": attempt(lambda: ebmcore.create("energy", "quartic_bowel")),
            "prefixed": attempt(lambda: ebmcore.create("energy", "example:mueler_brown")),
            "plugin": attempt(lambda: ebmcore.create("sampler", "exampel:rwm")),
        }))
    """)
    assert out["plain"]["type"] == "UnknownComponentError"
    assert "Did you mean 'quartic_bowl'" in out["plain"]["message"]
    assert out["prefixed"]["type"] == "UnknownComponentError"
    assert "Did you mean 'mueller_brown'" in out["prefixed"]["message"]
    assert out["plugin"]["type"] == "UnknownComponentError"
    assert "Unknown plugin 'exampel'" in out["plugin"]["message"]
    cli = plugin_env.run(["ebmcore", "info", "energy", "quartic_bowel"])
    assert cli.returncode != 0
    assert "Did you mean 'quartic_bowl'" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_example_plugin_tests_pass_against_the_wheels(plugin_env, tmp_path):
    # The plugin author's workflow: the example's own tests, run against the installed wheels,
    # with the ebmcore_registry fixture coming from the installed ebmcore's pytest11 entry point.
    tests = tmp_path / "example-tests"
    shutil.copytree(EXAMPLE_TESTS, tests, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [str(plugin_env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True, text=True, cwd=tmp_path, env=plugin_env.environ(), timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
