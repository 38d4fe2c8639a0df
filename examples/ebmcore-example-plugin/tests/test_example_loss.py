"""Tests of the example plugin's persistent-chain contrastive loss."""

from __future__ import annotations

import ebmcore
import pytest
import torch
from ebmcore.testing import check_loss

import ebmcore_example_plugin
from ebmcore_example_plugin.losses import ReplayContrastive
from ebmcore_example_plugin.models import RBFEnergy
from ebmcore_example_plugin.samplers import RandomWalkMetropolis


def _model() -> RBFEnergy:
    torch.manual_seed(0)
    return RBFEnergy(dim=2, n_components=4)


def test_loss_passes_the_conformance_check():
    # seeding through set_generator, a finite scalar reaching the model's parameters, the
    # chain declarations and a state_dict round trip that carries the persistent chains
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    loss = ReplayContrastive(RandomWalkMetropolis(step_size=0.5), k=3, n_chains=32)
    check_loss(loss, _model(), data)


def test_chains_persist_and_are_declared():
    loss = ReplayContrastive(RandomWalkMetropolis(step_size=0.5), k=2, n_chains=16)
    assert loss.persistent_chains() is None
    loss.set_generator(torch.Generator().manual_seed(0))
    out = loss(_model(), torch.randn(8, 2, generator=torch.Generator().manual_seed(2)))
    assert loss.persistent_chains().shape == (16, 2)
    assert torch.equal(out.negatives, loss.persistent_chains())
    assert loss.chain_counts == ("n_chains",) and loss.sharded_state == ("chains",)
    assert "chains" in loss.state_dict()


def test_created_by_name_with_a_sampler_name(ebmcore_registry):
    ebmcore_registry.register(ebmcore_example_plugin, name="example")
    loss = ebmcore.create("loss", "replay_contrastive", sampler="rwm", k=2)
    assert isinstance(loss.sampler, RandomWalkMetropolis)
    component, _ = ebmcore_registry.component("loss", "replay_contrastive")
    assert component.takes_sampler


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="k"):
        ReplayContrastive(RandomWalkMetropolis(), k=0)
    with pytest.raises(TypeError, match="sampler"):
        ReplayContrastive(sampler=3)  # type: ignore[arg-type]
