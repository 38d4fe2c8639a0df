"""The integrator contract: how an ODE ``dx/dt = f(x, t)`` (or an SDE) is discretised.

An :class:`Integrator` carries a state ``x`` from time ``t0`` to ``t1`` (either direction: a
sampler integrates noise to data, ``0 -> 1``; a likelihood integrates data to noise,
``1 -> 0``) and returns an :class:`IntegrationResult` with the number of field evaluations it
spent. The field ``f(x, t)`` receives ``t`` as a 0-d tensor on ``x``'s device and dtype;
stochastic integrators also take ``diffusion(t) -> g(t)`` and solve
``dx = f(x, t) dt + g(t) dW``.

:class:`FixedStepIntegrator` holds what every fixed-step method shares (the step count, the
time grid, counting evaluations, refusing non-finite values), so a new method writes only its
update, :meth:`FixedStepIntegrator.step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from ebmcore.errors import IntegrationError

__all__ = ["CountedField", "Diffusion", "FixedStepIntegrator", "IntegrationResult",
           "Integrator", "VectorField"]

#: A field ``f(x, t) -> dx/dt`` with the shape of ``x``.
VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: A diffusion coefficient ``g(t)``, a float or a 0-d tensor.
Diffusion = Callable[[torch.Tensor], "torch.Tensor | float"]


@dataclass
class IntegrationResult:
    """What :meth:`Integrator.integrate` returns.

    Attributes:
        x: The state at ``t1``, shaped like the initial state.
        nfe: The number of field evaluations spent (each a call of ``f`` on the whole batch).
        steps: The number of steps taken (accepted steps, for an adaptive method).
    """

    x: torch.Tensor
    nfe: int
    steps: int


class CountedField:
    """Wraps a field to count its evaluations and refuse non-finite values.

    Eagerly (the default) each value is checked as it comes, which costs a host
    synchronisation per evaluation. With ``defer=True`` each evaluation only records the
    smallest and largest entries it returned (0-d tensors; NaN and inf propagate), and
    :meth:`check` looks at them all at once, so a fixed-step run on a GPU synchronises once.

    Args:
        f: The field ``f(x, t)``.
        integrator: The integrator's name, for error messages.
        defer: Record instead of checking each value; the caller must call :meth:`check`.
    """

    def __init__(self, f: VectorField, integrator: str, *, defer: bool = False) -> None:
        self.f = f
        self.integrator = integrator
        self.defer = defer
        self.nfe = 0
        self._peaks: list[torch.Tensor] = []
        self._times: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Return ``f(x, t)``, raising :class:`~ebmcore.errors.IntegrationError` when it is
        not shaped like ``x`` or (when checked eagerly) not finite."""
        self.nfe += 1
        v = self.f(x, t)
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise IntegrationError(
                f"integrator {self.integrator!r}: the field returned {shape} at t = "
                f"{float(t):.6g}; expected a tensor of the state's shape {tuple(x.shape)}",
                integrator=self.integrator, time=float(t))
        if self.defer:
            # the smallest and largest entries: one pass, no temporary; NaN propagates
            self._peaks.extend(torch.aminmax(v.detach()))
            self._times.append(t)
        elif not bool(torch.isfinite(v).all()):
            self._raise(float(t))
        return v

    def check(self) -> None:
        """Raise :class:`~ebmcore.errors.IntegrationError` naming the first time at which a
        deferred evaluation was not finite; forget the recorded evaluations."""
        if not self._peaks:
            return
        finite = torch.isfinite(torch.stack(self._peaks)).reshape(-1, 2).all(1)
        times, self._peaks, self._times = self._times, [], []
        if not bool(finite.all()):
            self._raise(float(times[int((~finite).nonzero()[0])]))

    def _raise(self, time: float) -> None:
        raise IntegrationError(
            f"integrator {self.integrator!r}: the field returned non-finite values (NaN or "
            f"inf) at t = {time:.6g}", integrator=self.integrator, time=time)


def _check_time(label: str, value: torch.Tensor | float) -> float:
    """Return a finite time as a float, or raise ``ValueError`` naming ``label``."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{label} must be a scalar time, got shape {tuple(value.shape)}")
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{label} must be a finite number, got {value!r}")
    return float(value)


class Integrator:
    """Solves ``dx/dt = f(x, t)`` (or, when :attr:`stochastic`, an SDE) from ``t0`` to ``t1``.

    Subclasses implement :meth:`_integrate`; the public :meth:`integrate` checks the
    arguments first. :attr:`name` appears in error messages.
    """

    #: The name error messages use (the registered name of a built-in).
    name: ClassVar[str] = "integrator"
    #: Whether the integrator solves an SDE and needs ``diffusion``.
    stochastic: ClassVar[bool] = False

    def integrate(self, f: VectorField, x: torch.Tensor, t0: torch.Tensor | float,
                  t1: torch.Tensor | float, *, generator: torch.Generator | None = None,
                  diffusion: Diffusion | None = None) -> IntegrationResult:
        """Carry ``x`` from ``t0`` to ``t1`` along ``f``.

        Args:
            f: The field ``f(x, t) -> dx/dt``; ``t`` arrives as a 0-d tensor.
            x: The state at ``t0``, a floating tensor of any shape (a batch ``(B, ...)``).
            t0: The start time.
            t1: The end time (smaller than ``t0`` integrates backwards).
            generator: The random stream of a stochastic integrator's noise.
            diffusion: ``g(t)`` for a stochastic integrator; must be ``None`` for an ODE one.

        Returns:
            The state at ``t1`` with the evaluations and steps spent.
        """
        if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"integrator {self.name!r}: x must be a floating-point tensor, "
                            f"got {got}")
        start, end = _check_time("t0", t0), _check_time("t1", t1)
        if not callable(f):
            raise TypeError(f"integrator {self.name!r}: f must be callable f(x, t)")
        if self.stochastic and diffusion is None:
            raise ValueError(f"integrator {self.name!r} solves an SDE: pass diffusion=g(t)")
        if not self.stochastic and diffusion is not None:
            raise ValueError(f"integrator {self.name!r} solves ODEs and takes no diffusion; "
                             f"use a stochastic integrator such as 'euler_maruyama'")
        return self._integrate(f, x, start, end, generator=generator, diffusion=diffusion)

    def _integrate(self, f: VectorField, x: torch.Tensor, t0: float, t1: float, *,
                   generator: torch.Generator | None,
                   diffusion: Diffusion | None) -> IntegrationResult:
        """Solve with checked arguments (``t0``, ``t1`` as floats)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _integrate")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FixedStepIntegrator(Integrator):
    """An integrator taking ``steps`` equal steps; subclasses write :meth:`step`.

    Args:
        steps: The number of steps from ``t0`` to ``t1`` (a positive int).
    """

    def __init__(self, steps: int = 100) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"integrator {self.name!r}: steps must be a positive int, "
                             f"got {steps!r}")
        self.steps = steps

    def step(self, f: CountedField, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, *,
             generator: torch.Generator | None, diffusion: Diffusion | None) -> torch.Tensor:
        """Return the state one step ``dt`` after ``(x, t)`` (``dt`` is negative when
        integrating backwards)."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def _integrate(self, f: VectorField, x: torch.Tensor, t0: float, t1: float, *,
                   generator: torch.Generator | None,
                   diffusion: Diffusion | None) -> IntegrationResult:
        counted = CountedField(f, self.name, defer=True)
        # One grid, made once, so the last time is exactly t1 and no step builds tensors.
        grid = torch.linspace(t0, t1, self.steps + 1, dtype=torch.float64)
        times = grid.to(dtype=x.dtype, device=x.device)
        widths = grid.diff().to(dtype=x.dtype, device=x.device)
        for k in range(self.steps):
            x = self.step(counted, x, times[k], widths[k], generator=generator,
                          diffusion=diffusion)
        counted.check()
        return IntegrationResult(x=x, nfe=counted.nfe, steps=self.steps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps})"
