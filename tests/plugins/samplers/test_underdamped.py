"""Tests of underdamped Langevin dynamics (BAOAB)."""

from __future__ import annotations

import math

import pytest
import torch
from core_sampler_helpers import Counting, independent_chain_z
from ebmcore_samplers.schedules import Cosine
from ebmcore_samplers.underdamped import UnderdampedLangevin

import ebmcore
from ebmcore.testing.sampler_checks import GaussianTarget, check_sampler


def test_registered_with_aliases() -> None:
    for name in ("underdamped_langevin", "uld", "kinetic_langevin"):
        assert isinstance(ebmcore.create("sampler", name, step_size=0.1), UnderdampedLangevin)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"step_size": 0.0}, "step_size"), ({"step_size": 0.1, "friction": 0.0}, "friction"),
    ({"step_size": 0.1, "mass": -1.0}, "mass")])
def test_invalid_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        UnderdampedLangevin(**kwargs)


def test_one_step_is_baoab(gauss2: GaussianTarget) -> None:
    h, gamma, m = 0.2, 1.5, 2.0
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.3]], dtype=torch.float64)
    sampler = UnderdampedLangevin(h, friction=gamma, mass=m)
    state = sampler.step(gauss2, sampler.init(gauss2, x0), torch.Generator().manual_seed(2))[0]
    draws = torch.randn((2, *x0.shape), generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64)
    p = math.sqrt(m) * draws[0]  # first step draws the momentum, then the O-step noise
    c = math.exp(-gamma * h)
    p = p - h / 2 * gauss2.grad(x0)
    x = x0 + h / 2 * p / m
    p = c * p + math.sqrt((1 - c * c) * m) * draws[1]
    x = x + h / 2 * p / m
    p = p - h / 2 * gauss2.grad(x)
    assert torch.allclose(state.x, x) and torch.allclose(state.momentum, p)


def test_one_gradient_per_step(gauss2: GaussianTarget) -> None:
    energy = Counting(gauss2)
    UnderdampedLangevin(0.2).sample(energy, torch.zeros(3, 2, dtype=torch.float64), 9,
                                    burn_in=1)
    assert energy.gradients == 1 + 10


def test_exact_gaussian_variance_at_a_large_step() -> None:
    # BAOAB samples a Gaussian's configurational marginal exactly for any stable step,
    # where ULA at the same step would be biased by 1 / (1 - h / 2) = 2.
    target = GaussianTarget(torch.zeros(1), torch.eye(1))
    gen = torch.Generator().manual_seed(9)
    x0 = torch.randn(1000, 1, generator=gen, dtype=torch.float64)
    traj = UnderdampedLangevin(1.0, friction=1.0).sample(
        target, x0, 400, burn_in=100, generator=gen, return_trajectory=True).trajectory
    assert abs(float(independent_chain_z(traj.square().squeeze(-1), 1.0))) < 5
    assert abs(float(independent_chain_z(traj.squeeze(-1), 0.0))) < 5


def test_check_sampler_2d() -> None:
    check_sampler(UnderdampedLangevin(0.3, friction=1.0), n_chains=300)


def test_check_sampler_50d_ill_conditioned() -> None:
    check_sampler(UnderdampedLangevin(0.15, friction=1.0), dim=50, scale_ratio=5.0,
                  n_chains=400, burn_in=600, n_steps=600, thin=3)


def test_friction_schedule_and_state_dict() -> None:
    s = UnderdampedLangevin(0.1, friction=Cosine(5.0, 0.5, 100), mass=2.0)
    t = UnderdampedLangevin(1.0)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict() and t.friction(50) == s.friction(50)
