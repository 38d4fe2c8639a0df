"""Provenance: where each component came from, recorded with runs and checkpoints, and the
install command a missing one's error names."""

import types

import pytest

import ebmcore
from ebmcore import Component, hookimpl
from ebmcore.errors import UnknownComponentError
from ebmcore.provenance import require_recorded, run_provenance
from ebmcore.registry import Registry, install_hint, use_registry


class Thing:
    """A stand-in component."""


@pytest.fixture
def third_party():
    """A registry holding only a third-party plugin with a model and a loss."""
    plugin = types.ModuleType("acme")

    @hookimpl
    def ebmcore_models():
        return [Component("tiny", Thing)]

    @hookimpl
    def ebmcore_losses():
        return [Component("fancy", Thing)]

    plugin.ebmcore_models, plugin.ebmcore_losses = ebmcore_models, ebmcore_losses
    registry = Registry(entry_points=False)
    registry.register(plugin, "acme", distribution="acme-ebm", version="1.2.3")
    with use_registry(registry):
        yield registry


def test_provenance_names_plugin_distribution_and_version(third_party):
    assert ebmcore.registry.provenance("model", "TINY") == {
        "kind": "model", "name": "tiny", "plugin": "acme", "distribution": "acme-ebm",
        "version": "1.2.3", "builtin": False}
    recorded = run_provenance({"model": {"name": "tiny"}, "loss": {"name": "fancy"},
                               "sampler": {"name": "gone"}, "train": {"steps": 1}})
    assert set(recorded) == {"model", "loss"}


def test_a_missing_component_names_the_distribution_and_the_install_command(third_party):
    recorded = run_provenance({"model": {"name": "tiny"}})
    with use_registry(Registry(entry_points=False)), \
            pytest.raises(UnknownComponentError) as caught:
        require_recorded(recorded, {"model": {"name": "tiny"}})
    message = str(caught.value)
    assert "Unknown model 'tiny'" in message and "acme-ebm 1.2.3" in message
    assert "pip install acme-ebm==1.2.3" in message


def test_without_provenance_the_unknown_name_error_is_unchanged(third_party):
    with pytest.raises(UnknownComponentError) as caught:
        third_party.require("model", "huge")
    assert "pip install" not in str(caught.value)
    require_recorded(None)  # runs written before provenance was recorded check nothing


def test_install_hints_for_built_in_and_in_process_plugins():
    builtin = ebmcore.registry.provenance("model", "mlp")
    assert builtin["builtin"] and builtin["distribution"] == "ebmcore"
    assert "EBMCORE_DISABLED_PLUGINS" in install_hint(builtin)
    local = {"kind": "model", "name": "m", "plugin": "p", "distribution": None,
             "version": None}
    assert "register it again" in install_hint(local)
