"""The registry: discovery, statuses, name resolution, conflicts and errors."""

import types

import pytest

import ebmcore
from ebmcore import Component, hookimpl
from ebmcore.registry import Registry


class Widget:
    """A stand-in component.

    Args:
        size: How big.
        colour: Which colour.
    """

    def __init__(self, size: int, colour: str = "red") -> None:
        self.size, self.colour = size, colour


def make_plugin(name, energies=(), samplers=(), api=None):
    module = types.ModuleType(name)
    if api is not None:
        module.EBMCORE_PLUGIN_API = api

    @hookimpl
    def ebmcore_energies():
        return list(energies)

    @hookimpl
    def ebmcore_samplers():
        return list(samplers)

    module.ebmcore_energies = ebmcore_energies
    module.ebmcore_samplers = ebmcore_samplers
    return module


def test_kinds_are_the_component_kinds():
    assert ebmcore.kinds() == ("energy", "sampler", "loss", "model", "dataset", "backend",
                               "interpolant", "coupling", "integrator")


def test_an_unknown_backend_name_lists_the_backends(ebmcore_registry):
    with pytest.raises(ebmcore.UnknownComponentError, match="Available backends"):
        ebmcore_registry.get("backends", "warp")


def test_register_get_create_and_names(ebmcore_registry):
    ebmcore_registry.register(make_plugin("mine", energies=[
        Component("widget", Widget, "A widget.", aliases=("gizmo",)),
        Component("other", Widget, "Another."),
    ]))
    assert ebmcore.names("energy") == ["other", "widget"]
    assert ebmcore.names("energies") == ["other", "widget"]
    assert ebmcore.get("energy", "Widget") is Widget
    assert ebmcore.get("energy", "gizmo") is Widget
    assert ebmcore.get("energy", "mine:widget") is Widget
    made = ebmcore.create("energy", "widget", size=3)
    assert (made.size, made.colour) == (3, "red")


def test_lazy_target_imports_on_first_use(ebmcore_registry):
    ebmcore_registry.register(make_plugin("lazy", energies=[
        Component("ordered", "collections:OrderedDict", "A lazy one."),
    ]))
    from collections import OrderedDict

    assert ebmcore.get("energy", "ordered") is OrderedDict


def test_unknown_name_suggests_close_matches_and_lists_available(ebmcore_registry):
    ebmcore_registry.register(make_plugin("mine", samplers=[
        Component("langevin", Widget, "x"), Component("mala", Widget, "y"),
    ]))
    with pytest.raises(ebmcore.UnknownComponentError) as info:
        ebmcore.get("sampler", "langevn")
    message = str(info.value)
    assert isinstance(info.value, LookupError)
    assert "Unknown sampler 'langevn'" in message
    assert "Did you mean 'langevin'?" in message
    assert "Available samplers: langevin, mala" in message


def test_unknown_kind_is_a_clear_error(ebmcore_registry):
    with pytest.raises(ebmcore.UnknownKindError, match="Did you mean 'sampler'"):
        ebmcore.names("smpler")


def test_two_third_party_providers_are_ambiguous(ebmcore_registry):
    ebmcore_registry.register(make_plugin("alpha", energies=[Component("twin", Widget, "a")]))
    ebmcore_registry.register(make_plugin("beta", energies=[Component("twin", dict, "b")]))
    with pytest.raises(ebmcore.AmbiguousComponentError) as info:
        ebmcore.get("energy", "twin")
    assert "'alpha'" in str(info.value) and "'beta'" in str(info.value)
    assert "'alpha:twin'" in str(info.value)
    assert ebmcore.get("energy", "alpha:twin") is Widget
    assert ebmcore.get("energy", "beta:twin") is dict
    assert ebmcore.names("energy") == ["twin"]


def test_builtin_names_are_reserved_unless_replaced(ebmcore_registry):
    ebmcore_registry.register(make_plugin("core", energies=[Component("gauss", Widget, "")]),
                              builtin=True)
    squatter = ebmcore_registry.register(
        make_plugin("squat", energies=[Component("gauss", dict, "")]))
    assert ebmcore.get("energy", "gauss") is Widget
    assert ebmcore.get("energy", "squat:gauss") is dict
    assert any("reserved by built-in plugin 'core'" in note for note in squatter.notes)

    replacer = ebmcore_registry.register(
        make_plugin("better", energies=[Component("gauss", list, "", replaces=True)]))
    assert ebmcore.get("energy", "gauss") is list
    assert replacer.replaces == ["energy:gauss"]
    assert ebmcore.get("energy", "core:gauss") is Widget


def test_plugin_built_for_another_api_is_incompatible(ebmcore_registry):
    record = ebmcore_registry.register(make_plugin("future", api=2, energies=[
        Component("shiny", Widget, "")]))
    assert record.status == "incompatible"
    assert "plugin API 2" in record.error
    with pytest.raises(ebmcore.UnknownComponentError):
        ebmcore.get("energy", "shiny")


def test_hook_returning_wrong_type_fails_the_plugin(ebmcore_registry):
    with pytest.raises(ebmcore.PluginLoadError, match="expected ebmcore.Component"):
        ebmcore_registry.register(make_plugin("sloppy", energies=["not a component"]))
    record = next(r for r in ebmcore.plugins() if r.name == "sloppy")
    assert record.status == "failed" and record.components == {}


def test_misspelt_hook_is_caught(ebmcore_registry):
    module = types.ModuleType("typo")

    @hookimpl
    def ebmcore_energys():  # not a hook spec
        return []

    module.ebmcore_energys = ebmcore_energys
    with pytest.raises(ebmcore.PluginLoadError, match="ebmcore_energys"):
        ebmcore_registry.register(module)


def test_failed_lazy_import_names_plugin_and_target(ebmcore_registry):
    ebmcore_registry.register(make_plugin("ghost", energies=[
        Component("phantom", "no_such_module_xyz:Thing", "")]))
    with pytest.raises(ebmcore.PluginLoadError, match="plugin 'ghost'.*no_such_module_xyz"):
        ebmcore.get("energy", "phantom")


def test_create_rejects_unknown_parameters_naming_the_accepted_ones(ebmcore_registry):
    ebmcore_registry.register(make_plugin("mine", energies=[Component("widget", Widget, "")]))
    with pytest.raises(ebmcore.InvalidParametersError, match="Accepted parameters: size, colour"):
        ebmcore.create("energy", "widget", size=1, shade="blue")
    with pytest.raises(TypeError, match="size"):
        ebmcore.create("energy", "widget")


def test_describe_reads_parameters_from_signature_and_docstring(ebmcore_registry):
    ebmcore_registry.register(make_plugin("mine", energies=[Component("widget", Widget, "W.")]))
    info = ebmcore.describe("energy", "widget")
    assert info["plugin"] == "mine" and info["summary"] == "W."
    params = {p["name"]: p for p in info["parameters"]}
    assert params["size"]["default"] is None and params["size"]["doc"] == "How big."
    assert params["colour"]["default"] == "'red'"


def test_unknown_plugin_prefix_is_reported(ebmcore_registry):
    with pytest.raises(ebmcore.UnknownComponentError, match="Unknown plugin 'nope'"):
        ebmcore.get("energy", "nope:thing")


def test_lookup_mentions_failed_plugins(ebmcore_registry):
    ebmcore_registry.register(make_plugin("ok", energies=[Component("fine", Widget, "")]))
    record = ebmcore.registry.PluginRecord(name="broken", status="failed",
                                           error="ImportError: boom")
    ebmcore_registry._plugins["broken"] = record
    with pytest.raises(ebmcore.UnknownComponentError, match=r"failed to load: broken \(Import"):
        ebmcore.get("energy", "missing")


def test_discovery_is_lazy_and_happens_once(monkeypatch):
    calls = []
    import ebmcore.registry as registry_module

    def fake_entry_points():
        calls.append(1)
        return []

    monkeypatch.setattr(registry_module, "_iter_entry_points", fake_entry_points)
    registry = Registry()
    assert calls == []
    registry.names("energy")
    registry.plugins()
    assert calls == [1]


def test_discovery_is_thread_safe(monkeypatch):
    import threading
    import time

    import ebmcore.registry as registry_module

    calls = []

    def slow_entry_points():
        calls.append(1)
        time.sleep(0.05)
        return []

    monkeypatch.setattr(registry_module, "_iter_entry_points", slow_entry_points)
    registry = Registry()
    threads = [threading.Thread(target=registry.plugins) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1]
