"""Discovery from entry points and the environment switches, with fake entry points."""

import types

import pytest

import ebmcore
from ebmcore import Component, hookimpl
from ebmcore.registry import Registry


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.name, self.version = name, version


class FakeEntryPoint:
    def __init__(self, name, plugin, dist="third-party"):
        self.name, self.value, self._plugin, self.dist = name, f"{name}_mod", plugin, FakeDist(dist)

    def load(self):
        if isinstance(self._plugin, Exception):
            raise self._plugin
        return self._plugin


def plugin_with_energy(energy_name):
    module = types.ModuleType(energy_name)

    @hookimpl
    def ebmcore_energies():
        return [Component(energy_name, dict, f"{energy_name} energy")]

    module.ebmcore_energies = ebmcore_energies
    return module


@pytest.fixture
def fake_entry_points(monkeypatch):
    points = [
        FakeEntryPoint("core", plugin_with_energy("builtin_e"), dist="ebmcore"),
        FakeEntryPoint("good", plugin_with_energy("good_e")),
        FakeEntryPoint("other", plugin_with_energy("other_e")),
        FakeEntryPoint("broken", ImportError("No module named 'missing_dependency'")),
    ]
    import ebmcore.registry as registry_module

    monkeypatch.setattr(registry_module, "_iter_entry_points", lambda: points)
    for var in ("EBMCORE_DISABLE_PLUGIN_AUTOLOAD", "EBMCORE_PLUGINS", "EBMCORE_DISABLED_PLUGINS",
                "EBMCORE_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    return points


def statuses(registry):
    return {r.name: r.status for r in registry.plugins()}


def test_broken_plugin_is_recorded_and_host_keeps_working(fake_entry_points):
    registry = Registry()
    assert statuses(registry) == {"core": "active", "good": "active", "other": "active",
                                  "broken": "failed"}
    broken = next(r for r in registry.plugins() if r.name == "broken")
    assert "missing_dependency" in broken.error
    assert registry.get("energy", "good_e") is dict
    with pytest.raises(ebmcore.UnknownComponentError, match="broken"):
        registry.get("energy", "nothing")


def test_builtins_are_marked_and_listed_first(fake_entry_points):
    records = Registry().plugins()
    assert records[0].name == "core" and records[0].builtin
    assert records[0].distribution == "ebmcore"


def test_strict_mode_reraises(fake_entry_points, monkeypatch):
    monkeypatch.setenv("EBMCORE_STRICT_PLUGINS", "1")
    with pytest.raises(ebmcore.PluginLoadError, match="broken"):
        Registry().plugins()


def test_disable_autoload_keeps_builtins_only(fake_entry_points, monkeypatch):
    monkeypatch.setenv("EBMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = Registry()
    assert statuses(registry) == {"core": "active", "good": "disabled", "other": "disabled",
                                  "broken": "disabled"}
    assert registry.names("energy") == ["builtin_e"]


def test_allow_list_loads_only_named_third_party_plugins(fake_entry_points, monkeypatch):
    monkeypatch.setenv("EBMCORE_PLUGINS", "good")
    assert statuses(Registry()) == {"core": "active", "good": "active", "other": "disabled",
                                    "broken": "disabled"}


def test_empty_allow_list_means_no_third_party_plugins(fake_entry_points, monkeypatch):
    monkeypatch.setenv("EBMCORE_PLUGINS", "")
    assert statuses(Registry())["good"] == "disabled"


def test_block_list_blocks(fake_entry_points, monkeypatch):
    monkeypatch.setenv("EBMCORE_DISABLED_PLUGINS", "other,broken")
    registry = Registry()
    assert statuses(registry) == {"core": "active", "good": "active", "other": "blocked",
                                  "broken": "blocked"}
    with pytest.raises(ebmcore.UnknownComponentError):
        registry.get("energy", "other_e")


def test_real_builtins_are_discovered():
    records = {r.name: r for r in Registry().plugins()}
    for name in ("energies", "samplers", "losses", "models", "datasets"):
        assert records[name].builtin and records[name].status == "active"


def test_two_plugins_with_one_name_do_not_break_the_host(monkeypatch):
    import ebmcore.registry as registry_module

    points = [FakeEntryPoint("same", plugin_with_energy("first_e"), dist="dist-one"),
              FakeEntryPoint("Same", plugin_with_energy("second_e"), dist="dist-two")]
    monkeypatch.setattr(registry_module, "_iter_entry_points", lambda: points)
    monkeypatch.delenv("EBMCORE_STRICT_PLUGINS", raising=False)
    registry = Registry()
    records = {r.distribution: r for r in registry.plugins()}
    assert records["dist-one"].status == "active"
    assert records["dist-two"].status == "failed"
    assert "plugin names must be unique" in records["dist-two"].error
    assert "dist-one" in records["dist-two"].error
    assert registry.get("energy", "first_e") is dict
    monkeypatch.setenv("EBMCORE_STRICT_PLUGINS", "1")
    with pytest.raises(ebmcore.PluginLoadError, match="must be unique"):
        Registry().plugins()


def test_registering_a_taken_name_in_process_raises(ebmcore_registry):
    ebmcore_registry.register(plugin_with_energy("one_e"), name="mine")
    with pytest.raises(ebmcore.PluginLoadError, match="must be unique"):
        ebmcore_registry.register(plugin_with_energy("two_e"), name="MINE")
    assert ebmcore.names("energy") == ["one_e"]
