"""Tests of the Metropolis-adjusted Langevin algorithm."""

from __future__ import annotations

import math

import pytest
import torch
from core_sampler_helpers import Counting, compare_with_exact
from ebmcore_samplers.mala import MALA
from ebmcore_samplers.schedules import Cosine

import ebmcore
from ebmcore.testing.sampler_checks import GaussianTarget, check_sampler


def test_registered() -> None:
    assert isinstance(ebmcore.create("sampler", "mala", step_size=0.1), MALA)


@pytest.mark.parametrize(("kwargs", "name", "error"), [
    ({"step_size": 0.0}, "step_size", ValueError),
    ({"step_size": float("nan")}, "step_size", ValueError),
    ({"step_size": 0.1, "target_accept": 1.0}, "target_accept", ValueError),
    ({"step_size": 0.1, "target_accept": 0.0}, "target_accept", ValueError),
    ({"step_size": 0.1, "adapt_step_size": 1}, "adapt_step_size", TypeError),
    ({"step_size": Cosine(0.1, 0.01, 10)}, "adapt_step_size", ValueError),
])
def test_invalid_parameters_are_named(kwargs: dict, name: str, error: type) -> None:
    with pytest.raises(error, match=name):
        MALA(**kwargs)


def test_one_evaluation_per_step_and_cache_stays_exact(gauss2: GaussianTarget,
                                                       gen: torch.Generator) -> None:
    energy = Counting(gauss2)
    x0 = 3 * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    r = MALA(0.9).sample(energy, x0, 30, burn_in=10, generator=gen)
    assert energy.calls == {"energy_and_grad": 1 + 40, "grad": 0, "forward": 0}
    state = r.state
    e, g = gauss2.energy_and_grad(state.x)
    assert torch.allclose(state.energy, e) and torch.allclose(state.grad, g)
    acc = r.diagnostics["acceptance"]
    assert acc.shape == (64,) and 0 < float(acc.mean()) < 1  # some moves rejected


def test_accept_prob_is_the_metropolis_hastings_ratio(gauss2: GaussianTarget) -> None:
    eps = 0.8
    x0 = torch.tensor([[0.5, -1.0], [2.0, 2.0], [-3.0, 1.0]], dtype=torch.float64)
    sampler = MALA(eps, adapt_step_size=False)
    state = sampler.init(gauss2, x0)
    _, info = sampler.step(gauss2, state, torch.Generator().manual_seed(5))
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = x0 - eps * gauss2.grad(x0) + math.sqrt(2 * eps) * xi

    def log_q(to: torch.Tensor, frm: torch.Tensor) -> torch.Tensor:
        return -((to - frm + eps * gauss2.grad(frm)) ** 2).sum(1) / (4 * eps)

    log_ratio = -gauss2(y) + gauss2(x0) + log_q(x0, y) - log_q(y, x0)
    assert torch.allclose(info["accept_prob"], log_ratio.clamp(max=0).exp())
    assert info["accepted"].any() and (~info["accepted"]).any()
    assert torch.allclose(state.x[info["accepted"]], y[info["accepted"]])
    assert torch.equal(state.x[~info["accepted"]], x0[~info["accepted"]])


def test_adaptation_moves_the_step_toward_the_target(gauss2: GaussianTarget) -> None:
    x0 = gauss2.sample(200, torch.Generator().manual_seed(0))
    rates, sizes = {}, {}
    for start in (0.005, 5.0):
        r = MALA(start).sample(gauss2, x0, 100, burn_in=300,
                               generator=torch.Generator().manual_seed(1))
        fixed = MALA(start, adapt_step_size=False).sample(
            gauss2, x0, 100, generator=torch.Generator().manual_seed(1))
        rates[start] = (float(r.diagnostics["acceptance"].mean()),
                        float(fixed.diagnostics["acceptance"].mean()))
        sizes[start] = r.diagnostics["step_size"]
        assert sizes[start].shape == (200,)
        # Closer to the target than the untuned start.
        assert abs(rates[start][0] - 0.574) < abs(rates[start][1] - 0.574)
    assert float(sizes[0.005].median()) > 0.005 and float(sizes[5.0].median()) < 5.0


def test_check_sampler_2d() -> None:
    check_sampler(MALA(0.5), n_chains=300)


def test_check_sampler_without_adaptation() -> None:
    check_sampler(MALA(0.4, adapt_step_size=False), n_chains=300)


def test_check_sampler_50d_ill_conditioned() -> None:
    check_sampler(MALA(0.05), dim=50, scale_ratio=5.0, n_chains=300, burn_in=1500,
                  n_steps=1000, thin=5)


def test_banana_against_exact_samples() -> None:
    banana = ebmcore.create("energy", "banana", dim=2, curvature=0.3, scale=1.5).double()
    gen = torch.Generator().manual_seed(3)
    x0 = banana.sample(400, gen).double()
    traj = MALA(0.3).sample(banana, x0, 600, burn_in=300, generator=gen,
                            return_trajectory=True, thin=2,
                            backend="torch").trajectory
    exact = banana.sample(200_000, gen).double()
    compare_with_exact(traj, exact, {
        "x0": lambda x: x[..., 0], "x1": lambda x: x[..., 1], "x0^2": lambda x: x[..., 0] ** 2,
        "x1^2": lambda x: x[..., 1] ** 2, "x0^2*x1": lambda x: x[..., 0] ** 2 * x[..., 1],
        "1[x1>0]": lambda x: (x[..., 1] > 0).double()})


def test_state_dict_round_trip() -> None:
    s = MALA(Cosine(0.2, 0.01, 50), adapt_step_size=False, target_accept=0.6)
    t = MALA(1.0)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
