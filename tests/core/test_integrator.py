"""The integrator contract: argument checks, the fixed-step loop, counted and checked fields."""

from __future__ import annotations

import math

import pytest
import torch

from ebmcore.errors import IntegrationError
from ebmcore.integrator import CountedField, FixedStepIntegrator, IntegrationResult, Integrator
from ebmcore.testing import check_integrator


class Midpoint(FixedStepIntegrator):
    """The explicit midpoint rule, second order: written against the base alone."""

    name = "midpoint"

    def step(self, f, x, t, dt, *, generator, diffusion):
        return x + dt * f(x + 0.5 * dt * f(x, t), t + 0.5 * dt)


def test_a_fixed_step_subclass_needs_only_step():
    result = Midpoint(steps=50).integrate(lambda x, t: -x, torch.ones(2, dtype=torch.float64),
                                          0.0, 1.0)
    assert isinstance(result, IntegrationResult)
    assert (result.nfe, result.steps) == (100, 50)
    torch.testing.assert_close(result.x, torch.full((2,), math.exp(-1), dtype=torch.float64),
                               rtol=1e-4, atol=0)
    check_integrator(Midpoint(), order=2)


def test_the_time_grid_ends_exactly_at_t1_and_runs_backwards():
    seen: list[float] = []

    def record(x, t):
        seen.append(float(t))
        return torch.zeros_like(x)

    Midpoint(steps=3).integrate(record, torch.zeros(1), 1.0, 0.1)
    assert seen[0] == pytest.approx(1.0) and seen[-1] == pytest.approx(0.25)
    assert all(a > b for a, b in zip(seen[::2], seen[2::2], strict=False))


@pytest.mark.parametrize("args, error, match", [
    ((lambda x, t: x, torch.ones(2, dtype=torch.int64), 0.0, 1.0), TypeError, "floating"),
    ((lambda x, t: x, torch.ones(2), float("nan"), 1.0), ValueError, "t0 must be a finite"),
    ((lambda x, t: x, torch.ones(2), 0.0, torch.ones(2)), ValueError, "t1 must be a scalar"),
    (("not callable", torch.ones(2), 0.0, 1.0), TypeError, "f must be callable"),
])
def test_bad_arguments_are_named(args, error, match):
    with pytest.raises(error, match=match):
        Midpoint().integrate(*args)


def test_an_ode_integrator_refuses_a_diffusion():
    with pytest.raises(ValueError, match="'midpoint' solves ODEs"):
        Midpoint().integrate(lambda x, t: x, torch.ones(2), 0.0, 1.0, diffusion=lambda t: 1.0)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, "10"])
def test_steps_must_be_a_positive_int(steps):
    with pytest.raises(ValueError, match="steps must be a positive int"):
        Midpoint(steps=steps)


def test_counted_field_counts_and_refuses_bad_values():
    counted = CountedField(lambda x, t: 2 * x, "mine")
    counted(torch.ones(3), torch.tensor(0.0))
    counted(torch.ones(3), torch.tensor(0.5))
    assert counted.nfe == 2
    with pytest.raises(IntegrationError, match=r"'mine'.*non-finite.*t = 0\.25") as err:
        CountedField(lambda x, t: x / 0.0, "mine")(torch.ones(2), torch.tensor(0.25))
    assert (err.value.integrator, err.value.time) == ("mine", 0.25)
    with pytest.raises(IntegrationError, match=r"returned \(2, 1\).*shape \(2,\)"):
        CountedField(lambda x, t: x[:, None], "mine")(torch.ones(2), torch.tensor(0.0))


def test_the_base_needs_an_implementation():
    with pytest.raises(NotImplementedError, match="_integrate"):
        Integrator().integrate(lambda x, t: x, torch.ones(1), 0.0, 1.0)
    with pytest.raises(NotImplementedError, match="step"):
        FixedStepIntegrator(steps=1).integrate(lambda x, t: x, torch.ones(1), 0.0, 1.0)
