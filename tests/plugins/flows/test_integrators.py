"""The built-in integrators: order of accuracy, adaptive tolerance, SDE moments, errors."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from ebmcore_flows.integrators import RK4, Dopri5, Euler, EulerMaruyama, Heun

import ebmcore
from ebmcore.errors import IntegrationError, MissingDependencyError
from ebmcore.testing import check_integrator

#: dx/dt = A x + b sin(t): linear, non-autonomous, with a closed-form solution.
A = torch.tensor([[-0.3, -1.5], [1.5, -0.3]], dtype=torch.float64)
B = torch.tensor([0.5, -1.0], dtype=torch.float64)


def field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x @ A.T + B * torch.sin(t)


def exact(x0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    """Solve by the augmented-matrix exponential: the forcing sin(t) is the first entry of
    the rotation state (sin t, cos t)."""
    big = torch.zeros(4, 4, dtype=torch.float64)
    big[:2, :2], big[:2, 2] = A, B
    big[2, 3], big[3, 2] = 1.0, -1.0  # d/dt (sin, cos) = (cos, -sin)
    state = torch.cat([x0, torch.tensor([math.sin(t0), math.cos(t0)],
                                        dtype=torch.float64).expand(x0.shape[0], 2)], dim=1)
    return (state @ torch.linalg.matrix_exp(big * (t1 - t0)).T)[:, :2]


X0 = torch.tensor([[1.0, 0.5], [-2.0, 0.3]], dtype=torch.float64)


@pytest.mark.parametrize("cls, order", [(Euler, 1), (Heun, 2), (RK4, 4)])
def test_error_falls_as_the_order_says_when_the_step_halves(cls, order):
    want = exact(X0, 0.0, 2.0)
    errors = [(cls(steps=n).integrate(field, X0, 0.0, 2.0).x - want).abs().max().item()
              for n in (20, 40, 80, 160)]
    ratios = [a / b for a, b in zip(errors, errors[1:], strict=False)]
    for ratio in ratios:
        assert ratio == pytest.approx(2**order, rel=0.15), (errors, ratios)


@pytest.mark.parametrize("cls, per_step", [(Euler, 1), (Heun, 2), (RK4, 4)])
def test_fixed_step_counts(cls, per_step):
    result = cls(steps=7).integrate(field, X0, 0.0, 1.0)
    assert (result.nfe, result.steps) == (7 * per_step, 7)


@pytest.mark.parametrize("t0, t1", [(0.0, 2.0), (2.0, 0.0), (0.5, -1.0)])
@pytest.mark.parametrize("tol", [1e-4, 1e-7, 1e-10])
def test_dopri5_meets_its_tolerance_either_way(t0, t1, tol):
    result = Dopri5(rtol=tol, atol=tol).integrate(field, X0, t0, t1)
    error = (result.x - exact(X0, t0, t1)).abs().max().item()
    assert error < 50 * tol  # local tolerance; the global error stays within a small multiple
    assert result.nfe >= 6 * result.steps > 0


def test_dopri5_spends_more_evaluations_for_a_tighter_tolerance():
    loose = Dopri5(rtol=1e-3, atol=1e-3).integrate(field, X0, 0.0, 2.0)
    tight = Dopri5(rtol=1e-9, atol=1e-9).integrate(field, X0, 0.0, 2.0)
    assert tight.nfe > 2 * loose.nfe and tight.steps > loose.steps


def test_dopri5_keeps_a_float32_state_float32():
    result = Dopri5().integrate(lambda x, t: -x, torch.ones(3, 2), 0.0, 1.0)
    assert result.x.dtype == torch.float32
    torch.testing.assert_close(result.x, torch.full((3, 2), math.exp(-1)), rtol=1e-4, atol=0)


def test_dopri5_says_when_the_tolerance_cannot_be_met():
    blow_up = lambda x, t: x * x  # noqa: E731 - x(t) = 1 / (1 - t) leaves every bound at t = 1
    with pytest.raises(IntegrationError, match=r"'dopri5' could not meet .*max_steps") as err:
        Dopri5(rtol=1e-9, atol=1e-9, max_steps=20).integrate(blow_up, torch.ones(2), 0.0, 2.0)
    assert err.value.integrator == "dopri5"
    with pytest.raises(IntegrationError, match="dopri5"):
        Dopri5().integrate(blow_up, torch.ones(2, dtype=torch.float64), 0.0, 2.0)


def test_dopri5_without_torchdiffeq_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "ebmcore\[flows\]"'):
        Dopri5()
    assert isinstance(ebmcore.create("integrator", "rk4"), RK4)  # fixed-step ones need nothing


@pytest.mark.parametrize("params, match", [({"rtol": 0}, "rtol"), ({"atol": -1.0}, "atol"),
                                           ({"max_steps": 0}, "max_steps")])
def test_dopri5_refuses_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        Dopri5(**params)


@pytest.mark.parametrize("cls, order", [(Euler, 1), (Heun, 2), (RK4, 4), (Dopri5, None),
                                        (EulerMaruyama, None)])
def test_conformance(cls, order):
    check_integrator(cls(), order=order)


def test_euler_maruyama_matches_an_ornstein_uhlenbeck_process():
    """dx = -theta (x - mu) dt + g dW from x0: mean mu + (x0 - mu) e^{-theta t}, variance
    g^2 (1 - e^{-2 theta t}) / (2 theta); tolerances in Monte Carlo standard errors."""
    theta, mu, g, x0, t = 2.0, 0.5, 1.2, -1.0, 1.5
    n = 40_000
    result = EulerMaruyama(steps=300).integrate(
        lambda x, s: -theta * (x - mu), torch.full((n, 1), x0, dtype=torch.float64), 0.0, t,
        diffusion=lambda s: g, generator=torch.Generator().manual_seed(0))
    mean = mu + (x0 - mu) * math.exp(-theta * t)
    var = g * g * (1 - math.exp(-2 * theta * t)) / (2 * theta)
    assert abs(result.x.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(result.x.var().item() - var) < 5 * var * math.sqrt(2 / (n - 1))
    assert (result.nfe, result.steps) == (300, 300)


def test_euler_maruyama_uses_a_time_varying_diffusion_and_only_the_generator():
    """With f = 0 and g(t) = t the end point is Gaussian with variance int_0^1 t^2 = 1/3."""
    n = 40_000
    state = torch.get_rng_state()
    result = EulerMaruyama(steps=200).integrate(
        lambda x, s: torch.zeros_like(x), torch.zeros(n, dtype=torch.float64), 0.0, 1.0,
        diffusion=lambda s: s, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    var = result.x.var().item()
    dt = 1 / 200  # the left-point rule sums (k dt)^2 dt for k < 200
    want = sum((k * dt) ** 2 * dt for k in range(200))
    assert abs(var - want) < 5 * want * math.sqrt(2 / (n - 1))
    assert abs(want - 1 / 3) < 0.01


def test_euler_maruyama_refuses_a_bad_diffusion():
    with pytest.raises(IntegrationError, match="diffusion"):
        EulerMaruyama(steps=3).integrate(lambda x, t: x, torch.ones(2), 0.0, 1.0,
                                         diffusion=lambda t: float("nan"))
    with pytest.raises(IntegrationError, match="non-negative"):
        EulerMaruyama(steps=3).integrate(lambda x, t: x, torch.ones(2), 0.0, 1.0,
                                         diffusion=lambda t: -1.0)


@pytest.mark.parametrize("cls", [Euler, Heun, RK4, Dopri5])
def test_a_nan_in_the_field_names_the_integrator_and_the_time(cls):
    def field_with_hole(x, t):
        return x * float("nan") if float(t) > 0.5 else -x

    with pytest.raises(IntegrationError, match=rf"'{cls.name}'.*non-finite.*t = 0\.5") as err:
        cls().integrate(field_with_hole, torch.ones(2, dtype=torch.float64), 0.0, 1.0)
    assert err.value.integrator == cls.name and 0.5 < err.value.time <= 1.0
