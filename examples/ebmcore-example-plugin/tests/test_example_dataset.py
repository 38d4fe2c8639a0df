"""Tests of the example plugin's Gaussian-cross data set."""

from __future__ import annotations

import ebmcore
import pytest
import torch
from ebmcore.testing import check_dataset

import ebmcore_example_plugin
from ebmcore_example_plugin.datasets import GaussianCross


@pytest.mark.parametrize("scale, correlation", [(1.5, 0.9), (0.5, 0.3)])
def test_dataset_passes_the_conformance_check(scale, correlation):
    # seeding, log_prob integrating to one on the evaluation box, and samples matching it
    check_dataset(GaussianCross(scale=scale, correlation=correlation))


def test_recipe_trains_on_this_plugin_alone(ebmcore_registry):
    ebmcore_registry.register(ebmcore_example_plugin, name="example")
    component, _ = ebmcore_registry.component("dataset", "gaussian_cross")
    recipe = component.recipe
    assert (recipe["model"]["name"], recipe["loss"]["name"], recipe["sampler"]["name"]) == (
        "rbf_energy", "replay_contrastive", "random_walk_metropolis")
    for kind in ("model", "loss", "sampler"):
        ebmcore.get(kind, recipe[kind]["name"])  # each resolves within this plugin


def test_the_two_arms_are_symmetric():
    data = GaussianCross().sample(20_000, torch.Generator().manual_seed(0))
    product = (data[:, 0] * data[:, 1]).mean()
    assert abs(float(product)) < 0.1  # ± correlation in equal parts


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="correlation"):
        GaussianCross(correlation=1.0)
