"""Tests of the example plugin's random-walk Metropolis sampler."""

from __future__ import annotations

import math

import ebmcore
import pytest
import torch
from ebmcore.testing.sampler_checks import check_sampler

import ebmcore_example_plugin
from ebmcore_example_plugin.energies import QuarticBowl
from ebmcore_example_plugin.samplers import RandomWalkMetropolis


def test_sampler_passes_the_conformance_check():
    check_sampler(RandomWalkMetropolis(step_size=0.8), dim=2,
                  generator=torch.Generator().manual_seed(0))


def test_created_by_name(ebmcore_registry):
    ebmcore_registry.register(ebmcore_example_plugin, name="example")
    sampler = ebmcore.create("sampler", "rwm", step_size=0.3)
    assert isinstance(sampler, RandomWalkMetropolis)
    assert sampler.step_size == 0.3


def test_stationary_moments_of_the_quartic_bowl():
    # Independent chains, each run well past mixing: the final points are i.i.d. draws, so the
    # Monte Carlo standard error is the sample standard deviation over sqrt(n_chains).
    energy = QuarticBowl(dim=2, a=1.0)
    n_chains = 4000
    result = RandomWalkMetropolis(step_size=1.0).sample(
        energy, torch.zeros(n_chains, 2, dtype=torch.float64), n_steps=150, burn_in=150,
        generator=torch.Generator().manual_seed(3),
    )
    x = result.samples
    mean_mcse = x.std(dim=0) / math.sqrt(n_chains)
    assert bool((x.mean(dim=0).abs() < 5 * mean_mcse).all())
    sq = x**2
    var_mcse = sq.std(dim=0) / math.sqrt(n_chains)
    assert bool(((sq.mean(dim=0) - energy.variance).abs() < 5 * var_mcse).all())
    acceptance = result.diagnostics["acceptance"]
    assert acceptance.shape == (n_chains,)
    assert 0.0 < float(acceptance.mean()) < 1.0


def test_same_seed_same_bits_and_no_global_rng():
    energy = QuarticBowl(dim=3)
    sampler = RandomWalkMetropolis(step_size=0.5)
    x0 = torch.zeros(32, 3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = sampler.sample(energy, x0, 20, generator=torch.Generator().manual_seed(9)).samples
    b = sampler.sample(energy, x0, 20, generator=torch.Generator().manual_seed(9)).samples
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(x0, torch.zeros(32, 3))  # x0 is never modified in place


def test_step_reports_per_chain_info():
    energy = QuarticBowl(dim=2)
    sampler = RandomWalkMetropolis(step_size=0.5)
    state = sampler.init(energy, torch.randn(10, 2, generator=torch.Generator().manual_seed(4)))
    new_state, info = sampler.step(energy, state, torch.Generator().manual_seed(5))
    assert info["accept_prob"].shape == (10,)
    assert info["accepted"].dtype == torch.bool
    moved = (new_state.x != state.x).any(dim=1)
    assert torch.equal(moved, info["accepted"])
    torch.testing.assert_close(new_state.energy, energy(new_state.x))


def test_non_finite_proposals_are_rejected():
    class Box(ebmcore.Energy):
        """Flat inside the unit box, infinite energy (zero density) outside."""

        event_shape = (1,)

        def forward(self, x):
            return torch.where(x.abs().squeeze(-1) < 1.0, 0.0, math.inf).to(x.dtype)

    result = RandomWalkMetropolis(step_size=2.0).sample(
        Box(), torch.zeros(500, 1), n_steps=50, generator=torch.Generator().manual_seed(6))
    assert bool((result.samples.abs() < 1.0).all())


@pytest.mark.parametrize("step_size", [0.0, -1.0, math.nan])
def test_bad_step_size_raises(step_size):
    with pytest.raises(ValueError, match="step_size must be a finite positive number"):
        RandomWalkMetropolis(step_size=step_size)
