"""The flow conformance checks pass the built-ins and fail each kind of broken component."""

from __future__ import annotations

import pytest
import torch

from ebmcore.coupling import Coupling
from ebmcore.integrator import FixedStepIntegrator, IntegrationResult, Integrator
from ebmcore.interpolant import Interpolant
from ebmcore.testing import check_coupling, check_integrator, check_interpolant


class Linear(Interpolant):
    def coefficients(self, t):
        return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)


class WrongDerivative(Linear):
    def coefficients(self, t):
        alpha, sigma, _, d_sigma = super().coefficients(t)
        return alpha, sigma, 2 * torch.ones_like(t), d_sigma


class Reversed(Interpolant):
    def coefficients(self, t):
        return 1 - t, t, -torch.ones_like(t), torch.ones_like(t)


class SampleOff(Linear):
    def sample(self, x0, x1, t):
        xt, ut = super().sample(x0, x1, t)
        return xt, ut + 0.1


class ScoreOff(Linear):
    def velocity_to_score(self, v, xt, t):
        return 2 * super().velocity_to_score(v, xt, t)


class WrongShape(Linear):
    def coefficients(self, t):
        alpha, sigma, d_alpha, d_sigma = super().coefficients(t)
        return alpha[None], sigma, d_alpha, d_sigma


@pytest.mark.parametrize("broken, match", [
    (WrongDerivative(), "d_alpha against autograd"),
    (Reversed(), "t = 1 must be the data"),
    (SampleOff(), "u_t against d x_t / dt"),
    (ScoreOff(), "velocity_to_score"),
    (WrongShape(), "alpha has shape"),
    (object(), "is not an ebmcore.interpolant.Interpolant"),
])
def test_check_interpolant_catches(broken, match):
    check_interpolant(Linear())
    with pytest.raises(AssertionError, match=match):
        check_interpolant(broken)


class Shuffle(Coupling):
    def indices(self, x0, x1, generator=None):
        return torch.arange(x0.shape[0]), torch.randperm(x0.shape[0], generator=generator)


class GlobalShuffle(Coupling):
    def indices(self, x0, x1, generator=None):
        return torch.arange(x0.shape[0]), torch.randperm(x0.shape[0])


class Unseeded(Coupling):
    """Draws from a stream of its own rather than the generator it is given."""

    def __init__(self):
        self.stream = torch.Generator().manual_seed(0)

    def indices(self, x0, x1, generator=None):
        return torch.arange(x0.shape[0]), torch.randperm(x0.shape[0], generator=self.stream)


class Moves(Coupling):
    def pair(self, x0, x1, generator=None):
        return x0, x1 + 1.0


class NoChecks(Coupling):
    def pair(self, x0, x1, generator=None):
        return x0, x1


class InPlace(Coupling):
    def pair(self, x0, x1, generator=None):
        x0.neg_()
        return x0, x1


@pytest.mark.parametrize("broken, match", [
    (GlobalShuffle(), "global random stream"),
    (Unseeded(), "same generator seed"),
    (Moves(), "not a row of the input x1"),
    (NoChecks(), "accepted batches of different shapes"),
    (InPlace(), "modified its inputs"),
])
def test_check_coupling_catches(broken, match):
    check_coupling(Shuffle())
    with pytest.raises(AssertionError, match=match):
        check_coupling(broken)


class Euler(FixedStepIntegrator):
    name = "test_euler"

    def step(self, f, x, t, dt, *, generator, diffusion):
        return x + dt * f(x, t)


class HalfStep(Euler):
    def step(self, f, x, t, dt, *, generator, diffusion):
        return x + 0.5 * dt * f(x, t)


class LyingCount(Integrator):
    name = "lying"

    def _integrate(self, f, x, t0, t1, *, generator, diffusion):
        inner = Euler(steps=200).integrate(f, x, t0, t1)
        return IntegrationResult(inner.x, nfe=1, steps=inner.steps)


class SwallowsNaN(Integrator):
    name = "swallows"

    def _integrate(self, f, x, t0, t1, *, generator, diffusion):
        dt = (t1 - t0) / 200
        for k in range(200):
            x = x + dt * torch.nan_to_num(f(x, torch.tensor(t0 + k * dt, dtype=x.dtype)))
        return IntegrationResult(x, nfe=200, steps=200)


class FloatTime(Euler):
    def step(self, f, x, t, dt, *, generator, diffusion):
        return x + dt * f(x, float(t))


class EM(Euler):
    name = "test_em"
    stochastic = True

    def step(self, f, x, t, dt, *, generator, diffusion):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + dt * f(x, t) + diffusion(t) * dt.abs().sqrt() * noise


class GlobalNoiseEM(EM):
    def step(self, f, x, t, dt, *, generator, diffusion):
        noise = torch.randn(x.shape, dtype=x.dtype)
        return x + dt * f(x, t) + diffusion(t) * dt.abs().sqrt() * noise


class NoiseWithoutRoot(EM):
    def step(self, f, x, t, dt, *, generator, diffusion):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + dt * f(x, t) + diffusion(t) * dt.abs() * noise


@pytest.mark.parametrize("broken, order, match", [
    (HalfStep(), None, "relative error"),
    (Euler(), 2, "observed order"),
    (LyingCount(), None, "reported nfe = 1"),
    (SwallowsNaN(), None, "did not raise ebmcore.errors.IntegrationError"),
    (FloatTime(), None, "expected a 0-d tensor"),
    (GlobalNoiseEM(), None, "global random stream"),
    (NoiseWithoutRoot(steps=100), None, "Ornstein-Uhlenbeck variance"),
])
def test_check_integrator_catches(broken, order, match):
    check_integrator(Euler(steps=200), order=1)
    check_integrator(EM())
    with pytest.raises(AssertionError, match=match):
        check_integrator(broken, order=order)
