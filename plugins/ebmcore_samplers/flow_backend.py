"""How the ``flow`` sampler runs its integration: eagerly (``torch``) or ``compiled``.

The eager backend is the integrator itself. The compiled one hands ``torch.compile`` the
work of one integrator step, field evaluations included:

- a **fixed-step ODE integrator** (Euler, Heun, RK4, a plugin's ``FixedStepIntegrator``) is
  compiled one whole step at a time (its ``step`` with the field inlined and each stage's
  smallest and largest entries returned beside the state), and the loop over the time grid stays in
  Python. The stage magnitudes are checked once at the end, so a NaN is still reported with
  the time of the step it appeared in, and the run still synchronises with the device once;
- any other integrator (adaptive ``dopri5``, the stochastic ``euler_maruyama``, whose noise
  comes from the user's generator) integrates a compiled field: only the evaluation of the
  field (and its conversion to a velocity) is compiled.

Compiled functions are kept per sampler and field (and the state's shape, dtype and device),
so sampling the same field again reuses them; the field's parameters are graph inputs, so a
field trained between calls is sampled with its current weights. ``auto`` chooses the eager
backend: on a CPU compiling takes seconds, which one sampling run of a small field seldom
repays (``benchmarks/flows.py`` measures both), so ``compiled`` is asked for by name.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from ebmcore.errors import BackendUnavailableError, IntegrationError
from ebmcore.integrator import (
    Diffusion,
    FixedStepIntegrator,
    IntegrationResult,
    Integrator,
)

__all__ = ["BACKENDS", "CompiledFlow", "resolve_backend"]

#: The backends the ``flow`` sampler accepts.
BACKENDS = ("auto", "torch", "compiled")

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def resolve_backend(backend: Any) -> str:
    """Check ``backend`` and return the backend that runs: ``"torch"`` or ``"compiled"``.

    Raises:
        ValueError: When ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"flow sampler: backend must be one of {', '.join(BACKENDS)}, got "
                         f"{backend!r} (the MCMC backends numba and cuda run Markov kernels, "
                         f"not integrators)")
    return "torch" if backend == "auto" else backend


class _Stages:
    """Stands in for :class:`~ebmcore.integrator.CountedField` inside a compiled step: calls
    the drift and keeps each stage's smallest and largest entries (NaN propagates)."""

    def __init__(self, drift: Drift) -> None:
        self.drift = drift
        self.peaks: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = self.drift(x, t)
        self.peaks.extend(torch.aminmax(v.detach()))
        return v


class CompiledFlow:
    """The ``compiled`` backend of one flow sampler: compiled steps (or fields), cached.

    Args:
        integrator: The sampler's integrator.
    """

    def __init__(self, integrator: Integrator) -> None:
        self.integrator = integrator
        self._cache: weakref.WeakKeyDictionary[Any, dict[tuple, Any]] = (
            weakref.WeakKeyDictionary())

    def __getstate__(self) -> dict[str, Any]:
        # compiled functions are per process: a copy (or a pickle) starts with none
        return {"integrator": self.integrator}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["integrator"])  # type: ignore[misc]

    def _compiled(self, field: Any, key: tuple, build: Callable[[], Any]) -> Any:
        per_field = self._cache.setdefault(field, {})
        if key not in per_field:
            per_field[key] = build()
        return per_field[key]

    def integrate(self, field: Any, drift: Drift, x: torch.Tensor, t0: float, t1: float, *,
                  generator: torch.Generator | None,
                  diffusion: Diffusion | None) -> IntegrationResult:
        """Integrate ``drift`` (``field``'s, read as the sampler reads it) from ``t0`` to
        ``t1`` with compiled steps, or the integrator over a compiled drift.

        Raises:
            ebmcore.errors.BackendUnavailableError: When torch.compile cannot run here or
                cannot compile the field (``backend="torch"`` then runs it).
            ebmcore.errors.IntegrationError: When the field turns non-finite.
        """
        from ebmcore_samplers.compiled.backend import _inductor_failed, compiler_reason

        reason = compiler_reason(x)
        if reason is not None:
            raise BackendUnavailableError(f"flow sampler: backend='compiled' cannot run here: "
                                          f"{reason}; backend='torch' runs every field")
        integrator = self.integrator
        key = (tuple(x.shape), x.dtype, x.device.type)
        try:
            if isinstance(integrator, FixedStepIntegrator) and not integrator.stochastic:
                step = self._compiled(field, ("step", *key),
                                      lambda: _compile_step(integrator, drift))
                return _run_steps(integrator, step, x, t0, t1)
            compiled = self._compiled(field, ("drift", *key), lambda: torch.compile(drift))
            return integrator.integrate(compiled, x, t0, t1, generator=generator,
                                        diffusion=diffusion)
        except Exception as exc:
            if not _inductor_failed(exc):
                raise  # the field's own error, or an IntegrationError
            raise BackendUnavailableError(
                f"flow sampler: torch.compile could not compile {type(field).__name__} "
                f"({type(exc).__name__}); backend='torch' runs every field") from exc


def _compile_step(integrator: FixedStepIntegrator, drift: Drift) -> Any:
    """``torch.compile`` of one step of ``integrator`` along ``drift``, returning the new
    state and the stacked smallest and largest entries of its stages."""

    def step(x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        stages = _Stages(drift)
        x = integrator.step(stages, x, t, dt, generator=None,  # type: ignore[arg-type]
                            diffusion=None)
        return x, torch.stack(stages.peaks)

    return torch.compile(step, dynamic=False)


def _run_steps(integrator: FixedStepIntegrator, step: Any, x: torch.Tensor, t0: float,
               t1: float) -> IntegrationResult:
    """Run the compiled ``step`` over the integrator's time grid; check the stages at the
    end and name the first step whose field turned non-finite."""
    grid = torch.linspace(t0, t1, integrator.steps + 1, dtype=torch.float64)
    times = grid.to(dtype=x.dtype, device=x.device)
    widths = grid.diff().to(dtype=x.dtype, device=x.device)
    peaks = []
    for k in range(integrator.steps):
        x, stage_peaks = step(x, times[k], widths[k])
        peaks.append(stage_peaks)
    stacked = torch.stack(peaks)  # (steps, 2 x stages): each stage's smallest and largest
    finite = torch.isfinite(stacked).all(1)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        time = float(grid[first])
        raise IntegrationError(
            f"integrator {integrator.name!r}: the field returned non-finite values (NaN or "
            f"inf) in the step from t = {time:.6g} to {float(grid[first + 1]):.6g}",
            integrator=integrator.name, time=time)
    return IntegrationResult(x=x, nfe=int(stacked.numel()) // 2, steps=integrator.steps)
