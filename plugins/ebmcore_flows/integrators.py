"""The built-in integrators: Euler, Heun, RK4, adaptive Dopri5 and Euler–Maruyama.

The fixed-step methods are a few lines each on :class:`ebmcore.integrator.FixedStepIntegrator`.
The adaptive one hands step-size control to torchdiffeq (``torchdiffeq``, in the ``flows``
extra), whose Dormand–Prince 5(4) is the reference that Meta's ``flow_matching`` and
``torchcfm`` use; a tolerance it cannot meet becomes an :class:`~ebmcore.errors.IntegrationError`.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch

from ebmcore.errors import IntegrationError
from ebmcore.integrator import (
    CountedField,
    Diffusion,
    FixedStepIntegrator,
    IntegrationResult,
    Integrator,
    VectorField,
)
from ebmcore_flows._optional import import_optional

__all__ = ["RK4", "Dopri5", "Euler", "EulerMaruyama", "Heun"]


class Euler(FixedStepIntegrator):
    """Explicit Euler: ``x + dt f(x, t)``; first order, one evaluation per step.

    Args:
        steps: The number of equal steps from ``t0`` to ``t1``.
    """

    name = "euler"

    def step(self, f: CountedField, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, *,
             generator: torch.Generator | None, diffusion: Diffusion | None) -> torch.Tensor:
        """Return ``x + dt f(x, t)``."""
        return x + dt * f(x, t)


class Heun(FixedStepIntegrator):
    """Heun's method (explicit trapezoid): an Euler predictor corrected by the average of
    the slopes at both ends; second order, two evaluations per step.

    Args:
        steps: The number of equal steps from ``t0`` to ``t1``.
    """

    name = "heun"

    def step(self, f: CountedField, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, *,
             generator: torch.Generator | None, diffusion: Diffusion | None) -> torch.Tensor:
        """Return the trapezoidal update."""
        k1 = f(x, t)
        k2 = f(x + dt * k1, t + dt)
        return x + 0.5 * dt * (k1 + k2)


class RK4(FixedStepIntegrator):
    """The classical fourth-order Runge–Kutta method; four evaluations per step.

    Args:
        steps: The number of equal steps from ``t0`` to ``t1``.
    """

    name = "rk4"

    def step(self, f: CountedField, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, *,
             generator: torch.Generator | None, diffusion: Diffusion | None) -> torch.Tensor:
        """Return the classical RK4 update."""
        half = 0.5 * dt
        k1 = f(x, t)
        k2 = f(x + half * k1, t + half)
        k3 = f(x + half * k2, t + half)
        k4 = f(x + dt * k3, t + dt)
        return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


class EulerMaruyama(FixedStepIntegrator):
    """Euler–Maruyama for ``dx = f(x, t) dt + g(t) dW``: ``x + f dt + g sqrt(|dt|) z`` with
    ``z ~ N(0, I)`` drawn from the generator; strong order 1/2, weak order 1, one field
    evaluation per step. Integrating backwards (``t1 < t0``) uses ``|dt|`` for the noise.

    Args:
        steps: The number of equal steps from ``t0`` to ``t1``.
    """

    name = "euler_maruyama"
    stochastic = True

    def step(self, f: CountedField, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, *,
             generator: torch.Generator | None, diffusion: Diffusion | None) -> torch.Tensor:
        """Return the Euler–Maruyama update."""
        if diffusion is None:  # integrate() refuses this already; step() may be called alone
            raise ValueError(f"integrator {self.name!r} solves an SDE: pass diffusion=g(t)")
        g = torch.as_tensor(diffusion(t), dtype=x.dtype, device=x.device)
        if g.numel() != 1 or not bool(torch.isfinite(g)) or bool(g < 0):
            raise IntegrationError(
                f"integrator {self.name!r}: diffusion(t) must be a finite non-negative scalar, "
                f"got {g.tolist()} at t = {float(t):.6g}", integrator=self.name, time=float(t))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + dt * f(x, t) + g.reshape(()) * dt.abs().sqrt() * noise


class _TorchdiffeqField:
    """Adapts a field to torchdiffeq's ``func(t, y)`` and counts accepted steps through its
    ``callback_accept_step`` hook."""

    def __init__(self, f: CountedField, dtype: torch.dtype) -> None:
        self.f = f
        self.dtype = dtype
        self.accepted = 0

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.f(y, t.to(self.dtype))

    def callback_accept_step(self, t0: torch.Tensor, y0: torch.Tensor,
                             dt: torch.Tensor) -> None:
        self.accepted += 1


class Dopri5(Integrator):
    """Adaptive Dormand–Prince 5(4) through torchdiffeq's ``odeint``.

    Steps are accepted when the embedded error estimate is within ``atol + rtol * |x|``. When
    the tolerance cannot be met within ``max_steps`` step attempts, or the step size
    underflows (a stiff or exploding field), it raises
    :class:`~ebmcore.errors.IntegrationError`.

    Args:
        rtol: Relative tolerance, positive.
        atol: Absolute tolerance, positive.
        max_steps: The most step attempts (accepted and rejected) before giving up.
    """

    name = "dopri5"

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 10_000) -> None:
        for label, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"integrator {self.name!r}: {label} must be a positive "
                                 f"number, got {value!r}")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"integrator {self.name!r}: max_steps must be a positive int, "
                             f"got {max_steps!r}")
        self.rtol, self.atol, self.max_steps = float(rtol), float(atol), max_steps
        self._torchdiffeq: ModuleType = import_optional("torchdiffeq", "torchdiffeq",
                                                        f"integrator {self.name!r}")

    def _integrate(self, f: VectorField, x: torch.Tensor, t0: float, t1: float, *,
                   generator: torch.Generator | None,
                   diffusion: Diffusion | None) -> IntegrationResult:
        counted = CountedField(f, self.name)
        if t0 == t1:
            return IntegrationResult(x=x, nfe=0, steps=0)
        func = _TorchdiffeqField(counted, x.dtype)
        times = torch.tensor([t0, t1], dtype=torch.float64, device=x.device)
        try:
            path = self._torchdiffeq.odeint(func, x, times, method="dopri5", rtol=self.rtol,
                                            atol=self.atol,
                                            options={"max_num_steps": self.max_steps})
        except AssertionError as exc:  # torchdiffeq reports max steps and dt underflow so
            raise IntegrationError(
                f"integrator {self.name!r} could not meet rtol={self.rtol:g}, "
                f"atol={self.atol:g} from t = {t0:g} to {t1:g} ({exc}; {counted.nfe} field "
                f"evaluations): loosen the tolerances, raise max_steps, or check the field "
                f"for stiffness or blow-up", integrator=self.name) from exc
        return IntegrationResult(x=path[-1], nfe=counted.nfe, steps=func.accepted)

    def __repr__(self) -> str:
        return f"Dopri5(rtol={self.rtol:g}, atol={self.atol:g}, max_steps={self.max_steps})"
