"""Recipes through the registry: plugins declare run defaults on their components,
``ebmcore.recipes`` reads them and ``ebmcore.config.defaults_for`` combines them."""

import types
import warnings

import pytest

import ebmcore
from ebmcore import Component, hookimpl
from ebmcore.config import complete_run, defaults_for
from ebmcore.field import Field
from ebmcore.recipes import (
    default_dataset,
    image_recipes,
    is_field_model,
    loss_recipe_fits,
    recipe_for,
)
from ebmcore.registry import Registry, use_registry


class Thing:
    """A stand-in component."""


def make_plugin(name, datasets=(), losses=(), models=()):
    module = types.ModuleType(name)

    @hookimpl
    def ebmcore_datasets():
        return list(datasets)

    @hookimpl
    def ebmcore_losses():
        return list(losses)

    @hookimpl
    def ebmcore_models():
        return list(models)

    module.ebmcore_datasets, module.ebmcore_losses = ebmcore_datasets, ebmcore_losses
    module.ebmcore_models = ebmcore_models
    return module


@pytest.fixture
def third_party():
    """A registry holding only a third-party plugin: no built-in is reachable."""
    registry = Registry(entry_points=False)
    recipe = {"model": {"name": "tiny", "params": {"width": 3}},
              "loss": {"name": "fancy", "params": {}}, "train": {"steps": 7}, "default": True}
    plugin = make_plugin(
        "acme",
        datasets=[Component("blobs", Thing, recipe=recipe), Component("plain", Thing)],
        losses=[Component("fancy", Thing), Component("sharp", Thing, takes_sampler=True,
                                                    recipe={"model": {"name": "tiny",
                                                                      "params": {"width": 9}},
                                                            "train": {"lr": 0.5}}),
                Component("picky", Thing, recipe={"model": {"name": "other"},
                                                  "train": {"lr": 9.0}})],
        models=[Component("tiny", Thing, data_shape="dim")])
    registry.register(plugin, "acme", distribution="acme-ebm", version="1.2.3")
    with use_registry(registry):
        yield registry


def test_a_data_set_recipe_drives_the_defaults(third_party):
    config = defaults_for("blobs")
    assert config["dataset"] == {"name": "blobs", "params": {}}
    assert config["model"] == {"name": "tiny", "params": {"width": 3}}
    assert config["train"]["steps"] == 7 and config["train"]["batch_size"] == 256
    assert "default" not in config


def test_the_default_data_set_is_the_one_whose_recipe_says_so(third_party):
    assert default_dataset() == "blobs"
    assert defaults_for(None) == defaults_for("blobs")


def test_a_data_set_without_a_recipe_takes_the_default_recipe_under_its_own_name(third_party):
    config = defaults_for("plain")
    assert config["dataset"]["name"] == "plain" and config["model"]["name"] == "tiny"


def test_a_loss_recipe_applies_only_to_the_model_it_names(third_party):
    sharp = defaults_for("blobs", "sharp")
    assert sharp["loss"] == {"name": "sharp", "params": {}}
    assert sharp["model"]["params"] == {"width": 9} and sharp["train"]["lr"] == 0.5
    picky = defaults_for("blobs", "picky")
    assert picky["model"] == {"name": "tiny", "params": {"width": 3}}
    assert picky["train"]["lr"] == 3e-3


def test_complete_run_reads_the_recipe_the_file_names(third_party):
    config = complete_run({"dataset": {"name": "blobs"}, "train": {"steps": 3}})
    assert config["model"]["name"] == "tiny" and config["train"]["steps"] == 3


def test_two_third_party_defaults_are_an_error_naming_both(third_party):
    other = make_plugin("rival", datasets=[Component("dots", Thing, recipe={"default": True})])
    third_party.register(other, "rival")
    with pytest.raises(ebmcore.config.ConfigError, match="blobs, dots"):
        defaults_for(None)


def test_with_no_recipe_anywhere_the_defaults_name_no_component():
    with use_registry(Registry(entry_points=False)):
        config = defaults_for(None)
    assert not {"dataset", "model", "loss", "sampler"} & set(config)
    assert config["train"]["steps"] == 2000


def test_the_built_in_recipes_come_from_the_plugins_that_own_the_components():
    assert ebmcore.registry.recipe("dataset", "eight_gaussians")["default"] is True
    assert ebmcore.registry.recipe("dataset", "digits")["model"]["name"] == "conv"
    assert ebmcore.registry.recipe("loss", "sliced_score_matching")["train"] == {
        "grad_clip": 1.0}
    assert ebmcore.registry.recipe("loss", "pcd") is None
    component, _ = ebmcore.registry.get_registry().component("loss", "pcd")
    assert component.takes_sampler
    model, _ = ebmcore.registry.get_registry().component("model", "conv")
    assert model.data_shape == "event_shape"


def test_the_moved_constants_still_read_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="TRAIN_DEFAULTS"):
        defaults = ebmcore.config.TRAIN_DEFAULTS
    assert defaults == defaults_for(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert {"score_matching", "sliced_score_matching"} <= set(ebmcore.config.LOSS_RECIPES)
        assert set(ebmcore.config.IMAGE_DATASETS) == {"digits", "mnist", "fashion_mnist"}
        assert ebmcore.config.IMAGE_RECIPE["evaluate"] == {"ais_chains": 200, "ais_temps": 500}




def test_the_recipe_readers_hide_the_default_mark_and_unknown_names(third_party):
    assert "default" not in recipe_for("dataset", "blobs")
    assert recipe_for("dataset", "nowhere") is None and recipe_for("dataset", None) is None
    assert loss_recipe_fits({"train": {}}, {"model": {"name": "any"}})
    assert not loss_recipe_fits({"model": {"name": "a"}}, {"model": {"name": "b"}})
    assert image_recipes() == {}


class TinyField(Field):
    """A stand-in field model."""


@pytest.fixture
def with_fields(third_party):
    """The third-party registry plus a field model and a loss whose recipe names it."""
    plugin = make_plugin(
        "flowy",
        losses=[Component("flowish", Thing, recipe={
            "model": {"name": "tiny_field", "params": {"depth": 2}},
            "sampler": {"name": "glide", "params": {}}, "train": {"lr": 0.25}})],
        models=[Component("tiny_field", TinyField, data_shape="dim"),
                Component("other_field", TinyField, data_shape="dim")])
    third_party.register(plugin, "flowy")
    return third_party


def test_a_model_is_a_field_model_when_its_target_is_a_field(with_fields):
    assert is_field_model("tiny_field") and is_field_model("Tiny-Field")
    assert not is_field_model("tiny") and not is_field_model("nothing") \
        and not is_field_model(None)


def test_a_loss_recipe_naming_a_field_model_brings_it(with_fields):
    config = defaults_for("blobs", "flowish")
    # the field starts from the recipe's parameters alone (the energy's width is not its own)
    assert config["model"] == {"name": "tiny_field", "params": {"depth": 2}}
    assert config["sampler"] == {"name": "glide", "params": {}}
    assert config["train"]["lr"] == 0.25 and config["train"]["steps"] == 7


def test_a_field_recipe_leaves_a_run_that_already_trains_another_field(with_fields):
    recipe = recipe_for("loss", "flowish")
    assert loss_recipe_fits(recipe, {"model": {"name": "tiny"}})
    assert loss_recipe_fits(recipe, {"model": {"name": "tiny_field"}})
    assert not loss_recipe_fits(recipe, {"model": {"name": "other_field"}})
    # an energy model's recipe still fits only that model
    assert not loss_recipe_fits({"model": {"name": "tiny"}}, {"model": {"name": "other"}})


def test_the_built_in_flow_matching_recipe_trains_an_mlp_field():
    config = defaults_for("eight_gaussians", "flow_matching")
    assert config["model"]["name"] == "mlp_field"
    assert config["model"]["params"]["hidden"] == [256, 256, 256]
    assert config["sampler"]["name"] == "flow" and config["evaluate"]["integrator"] == "rk4"
    # a loss without a recipe keeps the data set's energy model
    assert defaults_for("eight_gaussians", "nce")["model"]["name"] == "mlp"


@pytest.fixture
def with_tuning(with_fields):
    """A data set whose recipe tunes the field loss (by alias) and its own base loss."""
    plugin = make_plugin("tuned", datasets=[Component("pics", Thing, recipe={
        "model": {"name": "tiny", "params": {"width": 4}},
        "loss": {"name": "fancy", "params": {}}, "train": {"steps": 11, "lr": 0.5},
        "losses": {"FlowIsh": {"model": {"params": {"depth": 5}}, "train": {"steps": 99}},
                   "fancy": {"loss": {"params": {"k": 2}}},
                   "flowish2": {"train": {"steps": 42}}}})],
        losses=[Component("flowish2", Thing, aliases=("flowy_alias",))])
    with_fields.register(plugin, "tuned")
    return with_fields


def test_a_data_set_tuning_for_a_loss_wins_over_the_loss_recipe(with_tuning):
    config = defaults_for("pics", "flowish")
    assert config["model"] == {"name": "tiny_field", "params": {"depth": 5}}
    # tuning (steps) over the loss recipe (lr) over the data set's base recipe
    assert config["train"]["steps"] == 99 and config["train"]["lr"] == 0.25
    assert "losses" not in config


def test_a_data_set_tuning_applies_to_its_own_base_loss_and_not_to_others(with_tuning):
    assert defaults_for("pics")["loss"] == {"name": "fancy", "params": {"k": 2}}
    other = defaults_for("pics", "sharp")
    assert other["train"]["steps"] == 11 and "losses" not in other
    # a loss named by an alias finds the tuning declared under its component's name
    assert defaults_for("pics", "flowy_alias")["train"]["steps"] == 42


def test_the_user_wins_over_a_data_set_tuning(with_tuning):
    config = complete_run({"train": {"steps": 3}, "model": {"params": {"depth": 1}}},
                          dataset="pics", loss="flowish")
    assert config["train"]["steps"] == 3 and config["model"]["params"] == {"depth": 1}


@pytest.mark.parametrize("losses, match", [
    ({"fancy": 3}, "must map loss names"), ({"fancy": {"default": True}}, "may not hold"),
    ({"fancy": {"trian": {}}}, "recipe key 'trian'")])
def test_a_malformed_tuning_section_is_an_error_naming_it(losses, match):
    with pytest.raises(ValueError, match=match):
        Component("bent", Thing, recipe={"losses": losses})
