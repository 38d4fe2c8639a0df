"""Tests of the example plugin's radial-basis-function energy model."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore.testing import check_model

import ebmcore_example_plugin
from ebmcore_example_plugin.models import RBFEnergy


def test_model_passes_the_conformance_check(ebmcore_registry):
    # built from the data's shape as its Component's data_shape says, then output (B,),
    # gradients against autograd, dtypes, devices, parameter gradients and state round trip
    ebmcore_registry.register(ebmcore_example_plugin, name="example")
    torch.manual_seed(0)
    check_model("rbf_energy", (2,), params={"n_components": 4})
    check_model("rbf_energy", (3,), params={"n_components": 2})


def test_one_bump_is_a_gaussian():
    model = RBFEnergy(dim=2, n_components=1, init_width=0.5)
    with torch.no_grad():
        model.centers.zero_()
    x = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        assert math.isclose(float(model(x)), 0.5 / 0.25, rel_tol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_components"):
        RBFEnergy(dim=2, n_components=0)
    with pytest.raises(ValueError, match="shape"):
        RBFEnergy(dim=2)(torch.zeros(3, 4))
