"""The data sets' descriptors: each brings its run recipe, and each box holds its mass."""

import pytest
import torch

import ebmcore
from ebmcore.config import check_train_config, defaults_for

TOY = ["eight_gaussians", "two_moons", "swiss_roll", "checkerboard", "rings", "spirals",
       "pinwheel"]


@pytest.mark.parametrize("name", TOY + ["digits", "mnist", "fashion_mnist"])
def test_every_built_in_data_set_brings_a_complete_recipe(name):
    recipe = ebmcore.registry.recipe("dataset", name)
    assert {"model", "loss", "sampler"} <= set(recipe)
    config = defaults_for(name)
    check_train_config(config)
    assert config["dataset"]["name"] == name


@pytest.mark.parametrize("name", TOY)
def test_the_declared_box_holds_nearly_all_samples(name):
    dataset = ebmcore.create("dataset", name)
    x = dataset.sample(20_000, torch.Generator().manual_seed(0))
    (x0, x1), (y0, y1) = dataset.evaluation_box
    inside = (x[:, 0] > x0) & (x[:, 0] < x1) & (x[:, 1] > y0) & (x[:, 1] < y1)
    assert float(inside.double().mean()) > 0.999
