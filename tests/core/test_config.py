"""Checks of a training configuration: unknown keys, sizes and the evaluation box."""

from __future__ import annotations

import copy

import pytest

from ebmcore.config import TRAIN_DEFAULTS, ConfigError, apply_overrides, check_train_config


def _with(*items: str) -> dict:
    return apply_overrides(copy.deepcopy(TRAIN_DEFAULTS), items)


def test_the_defaults_pass():
    """The built-in defaults are a valid configuration."""
    check_train_config(TRAIN_DEFAULTS)


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
