"""Broken, clashing, incompatible and replacing plugins, installed from wheels."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # shares the session's wheels and venv (~30 s to build)

BROKEN_MESSAGE = "ebmcore_fixture_broken needs the package 'not_installed_dependency'"


def test_broken_plugin_is_failed_and_the_host_still_works(plugin_env):
    out = plugin_env.probe("""
        print(json.dumps({
            "records": records(),
            "create": attempt(lambda: type(ebmcore.create("energy", "quartic_bowl")).__name__),
            "unknown": attempt(lambda: ebmcore.get("energy", "no_such_energy")),
        }))
    """, fixtures=("broken",))
    broken = out["records"]["broken"]
    assert broken["status"] == "failed"
    assert broken["distribution"] == "ebmcore-fixture-broken"
    assert broken["error"] == f"import failed: ImportError: {BROKEN_MESSAGE}"
    assert broken["components"] == {}
    assert out["records"]["example"]["status"] == "active"
    assert out["create"] == {"ok": True, "value": "QuarticBowl"}
    # Lookup errors point at the failed plugin, since it may be the one meant.
    assert out["unknown"]["type"] == "UnknownComponentError"
    assert "Plugins that failed to load: broken (import failed: ImportError" in (
        out["unknown"]["message"])


def test_cli_shows_the_failed_plugin(plugin_env):
    done = plugin_env.run(["ebmcore", "plugins"], fixtures=("broken",))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    (row,) = [line for line in lines if line.startswith("broken ")]
    assert row.split()[1] == "failed"
    assert f"error: import failed: ImportError: {BROKEN_MESSAGE}" in done.stdout


@pytest.mark.parametrize("value", ["1", "true"])
def test_strict_mode_raises_on_the_broken_plugin(plugin_env, value):
    env = {"EBMCORE_STRICT_PLUGINS": value}
    # Importing stays safe (discovery is lazy); the first lookup raises.
    done = plugin_env.run(
        ["python", "-c", "import ebmcore; print('imported', flush=True); ebmcore.names('energy')"],
        fixtures=("broken",), env=env)
    assert done.returncode != 0
    assert done.stdout.strip() == "imported"
    assert "ebmcore.errors.PluginLoadError: Plugin 'broken' failed to load" in done.stderr
    assert BROKEN_MESSAGE in done.stderr
    cli = plugin_env.run(["ebmcore", "plugins"], fixtures=("broken",), env=env)
    assert cli.returncode != 0
    assert "Plugin 'broken' failed to load" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_strict_mode_off_values_do_not_raise(plugin_env):
    out = plugin_env.probe("""
        print(json.dumps(records()["broken"]["status"]))
    """, fixtures=("broken",), env={"EBMCORE_STRICT_PLUGINS": "0"})
    assert out == "failed"


def test_two_providers_of_one_name_are_ambiguous(plugin_env):
    out = plugin_env.probe("""
        import torch


        def evaluate(name):
            energy = ebmcore.create("energy", name)
            return [type(energy).__module__, energy(torch.ones(1, 2)).tolist()]


        print(json.dumps({
            "plain": attempt(lambda: ebmcore.create("energy", "twin")),
            "a": attempt(lambda: evaluate("dup-a:twin")),
            "b": attempt(lambda: evaluate("DUP_B:Twin")),
            "names": ebmcore.names("energy").count("twin"),
            "records": records(),
        }))
    """, fixtures=("dup-a", "dup-b"))
    assert out["plain"]["type"] == "AmbiguousComponentError"
    message = out["plain"]["message"]
    assert "plugin 'dup-a' (distribution 'ebmcore-fixture-dup-a')" in message
    assert "plugin 'dup-b' (distribution 'ebmcore-fixture-dup-b')" in message
    assert "'dup-a:twin'" in message and "'dup-b:twin'" in message
    assert out["a"] == {"ok": True, "value": ["ebmcore_fixture_dup_a.twin", [1.0]]}
    assert out["b"] == {"ok": True, "value": ["ebmcore_fixture_dup_b.twin", [4.0]]}
    assert out["names"] == 1
    for name in ("dup-a", "dup-b"):
        assert out["records"][name]["status"] == "active"
        assert out["records"][name]["components"] == {"energy": ["twin"]}


def test_cli_info_reports_the_ambiguity(plugin_env):
    done = plugin_env.run(["ebmcore", "info", "energy", "twin"], fixtures=("dup-a", "dup-b"))
    assert done.returncode != 0
    assert "dup-a" in done.stderr and "dup-b" in done.stderr
    assert "Traceback" not in done.stderr


def test_plugin_for_another_api_major_is_incompatible(plugin_env):
    out = plugin_env.probe("""
        print(json.dumps({
            "record": records()["incompatible"],
            "names": ebmcore.names("energy"),
            "prefixed": attempt(lambda: ebmcore.get("energy", "incompatible:future_energy")),
        }))
    """, fixtures=("incompatible",))
    record = out["record"]
    assert record["status"] == "incompatible"
    assert record["error"] == "built for plugin API 99, this ebmcore speaks 1"
    assert record["components"] == {}
    assert "future_energy" not in out["names"]
    assert out["prefixed"]["type"] == "UnknownComponentError"
    assert "Plugin 'incompatible' is incompatible" in out["prefixed"]["message"]


def test_replacing_plugin_wins_over_the_builtin(plugin_env):
    out = plugin_env.probe("""
        import torch
        replaced = ebmcore.create("sampler", "mala", step_size=0.2)
        builtin = ebmcore.get("sampler", "samplers:mala")
        energy = ebmcore.create("energy", "quartic_bowl")
        result = replaced.sample(energy, torch.zeros(16, 2), n_steps=5,
                                 generator=torch.Generator().manual_seed(0))
        print(json.dumps({
            "replaced": type(replaced).__module__,
            "builtin": builtin.__module__,
            "record": records()["replacing"],
            "samples": list(result.samples.shape),
            "acceptance": float(result.diagnostics["acceptance"].mean()),
        }))
    """, fixtures=("replacing",))
    assert out["replaced"] == "ebmcore_fixture_replacing.mala"
    assert out["builtin"].startswith("ebmcore_samplers")
    assert out["record"]["status"] == "active"
    assert out["record"]["replaces"] == ["sampler:mala"]
    assert out["record"]["notes"] == []
    assert out["samples"] == [16, 2]
    assert 0.0 < out["acceptance"] <= 1.0
    cli = plugin_env.run(["ebmcore", "plugins"], fixtures=("replacing",))
    assert "replaces built-in sampler:mala" in cli.stdout
