"""Checks of a training configuration: unknown keys, sizes and the evaluation box."""

from __future__ import annotations

import copy

import pytest

from ebmcore.config import (
    ConfigError,
    apply_overrides,
    check_train_config,
    complete_run,
    defaults_for,
    merge_run,
)
from ebmcore.registry import get_registry

#: The run a command starts from when it names nothing: the default data set's recipe.
TRAIN_DEFAULTS = defaults_for(None)


def _with(*items: str) -> dict:
    return apply_overrides(copy.deepcopy(TRAIN_DEFAULTS), items)


def test_the_defaults_pass():
    """The built-in defaults are a valid configuration."""
    check_train_config(TRAIN_DEFAULTS)


def test_the_old_constants_are_deprecated_aliases():
    """TRAIN_DEFAULTS and LOSS_RECIPES left ebmcore.config for the plugins' recipes; they
    still resolve, with a DeprecationWarning, for one release."""
    import ebmcore.config as config

    with pytest.warns(DeprecationWarning, match="defaults_for"):
        assert config.TRAIN_DEFAULTS == TRAIN_DEFAULTS
    with pytest.warns(DeprecationWarning, match="recipe"):
        assert get_registry().recipes("loss") == config.LOSS_RECIPES


@pytest.mark.parametrize("item, message", [
    ("train.foo=1", "unknown key train.foo"),
    ("train.seed=3", "unknown key train.seed"),  # the seed is the top-level one
    ("evaluate.resolutio=64", "did you mean 'resolution'"),
    ("sample.n_chain=10", "did you mean 'n_chains'"),
])
def test_unknown_keys_are_refused_with_a_suggestion(item, message):
    """A misspelt or unknown setting names the key (and the nearest accepted one)."""
    with pytest.raises(ConfigError, match=message):
        check_train_config(_with(item))


def test_unknown_sections_are_refused():
    """A section or top-level key the run does not read is an error, not silently ignored."""
    config = copy.deepcopy(TRAIN_DEFAULTS)
    config["evaluation"] = {"n_test": 10}
    with pytest.raises(ConfigError, match="unknown key config.evaluation; did you mean"):
        check_train_config(config)


@pytest.mark.parametrize("item, message", [
    ("sample.n_chains=0", "sample.n_chains must be an integer of at least 1"),
    ("sample.thin=1.5", "sample.thin must be an integer"),
    ("sample.burn_in=-1", "sample.burn_in must be an integer of at least 0"),
    ("evaluate.resolution=1", "evaluate.resolution must be an integer of at least 2"),
    ("evaluate.bounds=[1.0, -1.0]", "low < high"),
    ("evaluate.bounds=[0, nan]", "finite"),
    ("evaluate.bounds=3", r"\[low, high\]"),
    ("seed=-2", "seed must be a non-negative integer"),
])
def test_bad_sizes_and_boxes_are_refused(item, message):
    """Sizes, the box and the seed are checked before anything is built."""
    with pytest.raises(ConfigError, match=message):
        check_train_config(_with(item))


def test_a_loss_with_a_recipe_brings_its_model():
    """Exact and sliced score matching start from a two-layer mlp (sliced with its gradient
    clipped); other losses keep the default model and start from their own parameters."""
    for loss in ("score_matching", "Sliced-Score-Matching"):
        config = defaults_for(None, loss)
        check_train_config(config)
        assert config["loss"] == {"name": loss.lower().replace("-", "_"), "params": {}}
        assert config["model"] == {"name": "mlp", "params": {"hidden": [128, 128]}}
    assert defaults_for(None, "sliced_score_matching")["train"]["grad_clip"] == 1.0
    assert "grad_clip" not in defaults_for(None, "score_matching")["train"]
    assert {"score_matching", "sliced_score_matching"} <= set(get_registry().recipes("loss"))
    assert defaults_for("rings", "pcd") == {**TRAIN_DEFAULTS,
                                            "dataset": {"name": "rings", "params": {}}}
    cd = defaults_for(None, "cd")
    assert cd["loss"] == {"name": "cd", "params": {}} and cd["model"] == TRAIN_DEFAULTS["model"]
    # an image data set keeps its own model whatever the loss
    image = defaults_for("digits", "score_matching")
    assert image["model"]["name"] == "conv" and image["loss"]["name"] == "score_matching"


def test_merge_run_starts_a_renamed_component_from_its_own_defaults():
    """A file naming another model than the recipe's takes none of the recipe's parameters;
    one naming the same model merges into them."""
    recipe = defaults_for(None, "score_matching")
    other = merge_run(recipe, {"model": {"name": "conv", "params": {"channels": [8]}}})
    assert other["model"] == {"name": "conv", "params": {"channels": [8]}}
    same = merge_run(recipe, {"model": {"name": "mlp", "params": {"activation": "elu"}}})
    assert same["model"]["params"] == {"hidden": [128, 128], "activation": "elu"}
    assert merge_run(recipe, {"train": {"steps": 5}})["model"] == recipe["model"]


def test_complete_run_starts_from_the_recipe_the_file_or_the_command_line_names():
    """A file is completed from the defaults of the data set and loss it names; names given
    on the command line win over the file's."""
    saved = {"loss": {"name": "score_matching"}, "train": {"steps": 5}}
    config = complete_run(saved)
    assert config["model"]["params"] == {"hidden": [128, 128]}
    assert config["train"]["steps"] == 5
    assert complete_run(saved, loss="pcd")["model"] == TRAIN_DEFAULTS["model"]
    assert complete_run({}, dataset="digits")["model"]["name"] == "conv"
