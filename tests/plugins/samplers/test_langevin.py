"""Tests of unadjusted Langevin dynamics."""

from __future__ import annotations

import math

import pytest
import torch
from core_sampler_helpers import AutogradQuadratic, Counting, independent_chain_z
from ebmcore_samplers.langevin import Langevin
from ebmcore_samplers.schedules import Exponential

import ebmcore
from ebmcore.testing.sampler_checks import GaussianTarget, check_sampler


def test_registered_with_aliases() -> None:
    for name in ("langevin", "ula", "sgld"):
        assert isinstance(ebmcore.create("sampler", name, step_size=0.1), Langevin)


@pytest.mark.parametrize(("kwargs", "name", "error"), [
    ({"step_size": 0.0}, "step_size", ValueError),
    ({"step_size": -0.1}, "step_size", ValueError),
    ({"step_size": "0.1"}, "step_size", TypeError),
    ({"step_size": 0.1, "noise_scale": -1.0}, "noise_scale", ValueError),
    ({"step_size": 0.1, "grad_clip": 0.0}, "grad_clip", ValueError),
    ({"step_size": 0.1, "clamp": (1.0, -1.0)}, "clamp", ValueError),
    ({"step_size": 0.1, "clamp": (None, None)}, "clamp", ValueError),
    ({"step_size": 0.1, "clamp": 3.0}, "clamp", ValueError),
])
def test_invalid_parameters_are_named(kwargs: dict, name: str, error: type) -> None:
    with pytest.raises(error, match=name):
        Langevin(**kwargs)


def test_one_step_is_the_ula_update(gauss2: GaussianTarget, gen: torch.Generator) -> None:
    x0 = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    eps, s = 0.1, 0.7
    sampler = Langevin(eps, noise_scale=s)
    state = sampler.init(gauss2, x0)
    state, info = sampler.step(gauss2, state, torch.Generator().manual_seed(3))
    xi = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = x0 - eps * gauss2.grad(x0) + s * math.sqrt(2 * eps) * xi
    assert torch.allclose(state.x, expected)
    assert torch.allclose(state.grad, gauss2.grad(state.x))
    assert info == {}


def test_closed_form_gradient_is_evaluated_once_per_step(gauss2: GaussianTarget) -> None:
    energy = Counting(gauss2)
    Langevin(0.1).sample(energy, torch.zeros(4, 2, dtype=torch.float64), 20, burn_in=5)
    # init's energy_and_grad, then one gradient per step; at the two steps the energy trace
    # records, the gradient comes with the energy (energy_and_grad) instead.
    assert energy.calls == {"energy_and_grad": 1 + 2, "grad": 25 - 2, "forward": 0}


def test_autograd_energy_traces_every_step() -> None:
    class Quadratic(AutogradQuadratic):
        event_shape = (3,)
        n_forward = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.n_forward += 1
            return super().forward(x)

    energy = Quadratic()
    r = Langevin(0.1).sample(energy, torch.zeros(4, 3), 12, thin=3)
    # The energy comes with each autograd gradient: no extra evaluation for the trace.
    assert energy.n_forward == 1 + 12
    assert r.diagnostics["energy_trace_steps"].tolist() == [3, 6, 9, 12]
    assert r.diagnostics["energy_trace"].shape == (4,)


def test_grad_clip_limits_each_chains_move() -> None:
    target = GaussianTarget(torch.zeros(2), torch.eye(2) * 1e-4)  # gradients ~ 1e4 |x|
    x0 = torch.tensor([[1.0, 1.0], [1e-5, 0.0]], dtype=torch.float64)
    sampler = Langevin(0.01, noise_scale=0.0, grad_clip=2.0)
    state = sampler.step(target, sampler.init(target, x0), torch.Generator())[0]
    moves = (state.x - x0).norm(dim=1)
    assert moves[0] == pytest.approx(0.01 * 2.0)  # clipped to norm 2
    assert moves[1] == pytest.approx(0.01 * 1e-5 / 1e-4)  # small gradient untouched


def test_clamp_keeps_chains_in_the_box(gauss2: GaussianTarget, gen: torch.Generator) -> None:
    x0 = torch.zeros(50, 2, dtype=torch.float64)
    r = Langevin(0.5, clamp=(-0.2, 0.3)).sample(gauss2, x0, 20, generator=gen,
                                                 return_trajectory=True)
    assert r.trajectory.min() >= -0.2 and r.trajectory.max() <= 0.3
    assert (r.trajectory == 0.3).any()  # the box is actually hit


def test_step_size_schedule_is_followed() -> None:
    # Without noise on E = x^2/2 a step multiplies x by (1 - eps_t).
    target = GaussianTarget(torch.zeros(1), torch.eye(1))
    schedule = Exponential(0.5, 0.05, steps=6)
    r = Langevin(schedule, noise_scale=0.0).sample(target, torch.ones(1, 1, dtype=torch.float64),
                                                   4, burn_in=3)
    expected = math.prod(1 - schedule(t) for t in range(7))
    assert float(r.samples) == pytest.approx(expected)


@pytest.mark.parametrize("eps", [0.2, 0.05])
def test_stationary_variance_matches_the_ula_closed_form(eps: float) -> None:
    # On N(0, s2) ULA is an AR(1) chain whose stationary variance is s2 / (1 - eps / (2 s2)).
    s2 = 1.0
    target = GaussianTarget(torch.zeros(1), torch.full((1, 1), s2))
    gen = torch.Generator().manual_seed(7)
    x0 = torch.randn(2000, 1, generator=gen, dtype=torch.float64)
    traj = Langevin(eps).sample(target, x0, 300, burn_in=200, generator=gen,
                                return_trajectory=True).trajectory
    closed_form = s2 / (1 - eps / (2 * s2))
    z = independent_chain_z(traj.square().squeeze(-1), closed_form)
    assert abs(float(z)) < 5, f"variance off the closed form {closed_form:.4f} by z={float(z):.2f}"
    # The test has the power to see the bias: the exact variance s2 is rejected.
    if eps == 0.2:
        assert abs(float(independent_chain_z(traj.square().squeeze(-1), s2))) > 5


def test_bias_shrinks_with_the_step_size() -> None:
    target = GaussianTarget(torch.zeros(1), torch.eye(1))
    errors = []
    for eps in (0.2, 0.05):
        gen = torch.Generator().manual_seed(11)
        x0 = torch.randn(2000, 1, generator=gen, dtype=torch.float64)
        traj = Langevin(eps).sample(target, x0, 300, burn_in=200, generator=gen,
                                    return_trajectory=True).trajectory
        errors.append(abs(float(traj.square().mean()) - 1.0))
    assert errors[1] < errors[0] / 2  # closed form: 0.111 -> 0.026


def test_check_sampler_passes_at_a_small_step() -> None:
    check_sampler(Langevin(0.01), burn_in=800, n_steps=800, n_chains=300)


def test_check_sampler_catches_a_large_step() -> None:
    with pytest.raises(AssertionError, match="cov"):
        check_sampler(Langevin(0.3), burn_in=200, n_steps=400, n_chains=300)


def test_state_dict_round_trip() -> None:
    s = Langevin(Exponential(0.1, 0.01, 10), noise_scale=0.5, grad_clip=3.0, clamp=(-1, None))
    t = Langevin(1.0)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    assert t.step_size(5) == s.step_size(5) and t.clamp == (-1.0, None)
