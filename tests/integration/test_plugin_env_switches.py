"""The environment switches of plugin discovery, read on the first lookup (see registry.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # shares the session's wheels and venv (~30 s to build)

BUILTINS = {"energies", "samplers", "losses", "models", "datasets", "flows"}

STATUS = """
    print(json.dumps({
        "status": {name: r["status"] for name, r in records().items()},
        "errors": {name: r["error"] for name, r in records().items()},
        "energies": ebmcore.names("energy"),
    }))
"""


def test_disable_autoload_keeps_builtins_only(plugin_env):
    # The broken plugin is not even imported, so strict mode has nothing to raise about.
    out = plugin_env.probe(STATUS, fixtures=("broken",),
                           env={"EBMCORE_DISABLE_PLUGIN_AUTOLOAD": "1",
                                "EBMCORE_STRICT_PLUGINS": "1"})
    assert all(out["status"][name] == "active" for name in BUILTINS)
    assert out["status"]["example"] == "disabled"
    assert out["status"]["broken"] == "disabled"
    assert out["errors"]["example"] == "EBMCORE_DISABLE_PLUGIN_AUTOLOAD is set"
    assert "quartic_bowl" not in out["energies"]


def test_allow_list_loads_only_the_named_third_party_plugins(plugin_env):
    out = plugin_env.probe(STATUS, fixtures=("broken", "dup-a", "dup-b"),
                           env={"EBMCORE_PLUGINS": " Example , dup_a"})
    assert all(out["status"][name] == "active" for name in BUILTINS)  # not subject to it
    assert out["status"]["example"] == "active"
    assert out["status"]["dup-a"] == "active"
    assert out["status"]["dup-b"] == "disabled"
    assert out["status"]["broken"] == "disabled"
    assert out["errors"]["broken"] == "not listed in EBMCORE_PLUGINS"
    assert "twin" in out["energies"]


def test_empty_allow_list_disables_every_third_party_plugin(plugin_env):
    out = plugin_env.probe(STATUS, env={"EBMCORE_PLUGINS": ""})
    assert out["status"]["example"] == "disabled"
    assert all(out["status"][name] == "active" for name in BUILTINS)


def test_block_list_resolves_an_ambiguity(plugin_env):
    out = plugin_env.probe("""
        print(json.dumps({
            "status": {name: r["status"] for name, r in records().items()},
            "twin": type(ebmcore.create("energy", "twin")).__module__,
            "blocked": attempt(lambda: ebmcore.get("energy", "dup-a:twin")),
        }))
    """, fixtures=("dup-a", "dup-b"), env={"EBMCORE_DISABLED_PLUGINS": "Dup_A"})
    assert out["status"]["dup-a"] == "blocked"
    assert out["twin"] == "ebmcore_fixture_dup_b.twin"
    assert out["blocked"]["type"] == "UnknownComponentError"
    assert "Plugin 'dup-a' is blocked (listed in EBMCORE_DISABLED_PLUGINS)" in (
        out["blocked"]["message"])


def test_block_list_keeps_strict_mode_off_a_broken_plugin(plugin_env):
    out = plugin_env.probe(STATUS, fixtures=("broken",),
                           env={"EBMCORE_DISABLED_PLUGINS": "broken",
                                "EBMCORE_STRICT_PLUGINS": "1"})
    assert out["status"]["broken"] == "blocked"
    assert out["status"]["example"] == "active"


def test_block_list_applies_to_builtins_too(plugin_env):
    out = plugin_env.probe("""
        print(json.dumps({
            "status": records()["samplers"]["status"],
            "mala": attempt(lambda: ebmcore.get("sampler", "mala")),
            "rwm": attempt(lambda: ebmcore.get("sampler", "rwm").__name__),
        }))
    """, env={"EBMCORE_DISABLED_PLUGINS": "samplers"})
    assert out["status"] == "blocked"
    assert out["mala"]["type"] == "UnknownComponentError"
    assert out["rwm"] == {"ok": True, "value": "RandomWalkMetropolis"}
