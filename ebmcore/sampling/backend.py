"""The backend contract: an object that says whether it can run a sampling case, and runs it.

:meth:`ebmcore.Sampler.sample` owns the loop around a run (argument checks, the choice of a
backend, the fallback to torch, the diagnostics); a backend only moves the chains. It gets
the run as a :class:`RunSpec` and returns a :class:`RawRun`, from which the core builds the
diagnostics in one place (:func:`ebmcore.sampling.results.sample_result`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from ebmcore.energy import Energy
    from ebmcore.sampler import Sampler

#: Why a backend cannot run a case (a sentence), or ``None`` when it can.
Reason = str | None

#: A hook :meth:`ebmcore.Sampler.sample` calls at every kept step with ``(k, x)``: the kept
#: step's index ``k`` (from 0) and the positions ``x`` of every chain ``(B, *event_shape)``.
KeepHook = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class RunSpec:
    """One sampling run, as a backend sees it (besides its chains and generator).

    Attributes:
        n_steps: Kept steps (after burn-in).
        burn_in: Steps run first, during which the sampler may adapt.
        thin: Keep every ``thin``-th step.
        on_keep: The hook to call at every kept step, or ``None``.
        return_trajectory: Whether to record the kept positions.
        trace_stride: Record chains ``0, s, 2s, ...`` only (``s = trace_stride``).
        time_limit: Stop cleanly after the step during which this many seconds (from the
            start of the run) have passed, or ``None``.
        should_stop: Stop cleanly after the step at which ``should_stop()`` returns true, or
            ``None``. Only backends with ``stops = True`` honour either.
    """

    n_steps: int
    burn_in: int = 0
    thin: int = 1
    on_keep: KeepHook | None = None
    return_trajectory: bool = False
    trace_stride: int = 1
    time_limit: float | None = None
    should_stop: Callable[[], bool] | None = None

    @property
    def stoppable(self) -> bool:
        """Whether the run may stop early (a ``time_limit`` or a ``should_stop``)."""
        return self.time_limit is not None or self.should_stop is not None

    @property
    def n_total(self) -> int:
        """Every step of the run: ``burn_in + n_steps``."""
        return self.burn_in + self.n_steps

    @property
    def n_kept(self) -> int:
        """Kept steps in the trajectory: ``n_steps // thin``."""
        return self.n_steps // self.thin


@dataclass
class RawRun:
    """What a backend returns: the chains and the raw tallies the core turns into diagnostics.

    Attributes:
        samples: Final positions ``(B, *event_shape)``, owned by the result.
        state: A sampler state to continue from, or ``None`` (a fused run whose chains
            turned non-finite cannot build one).
        trajectory: Kept positions ``(n_kept, ceil(B / trace_stride), *event_shape)`` when
            the run asked for them, else ``None``.
        energy_trace: Mean energy at the steps in ``energy_trace_steps`` (``(T,)``).
        energy_trace_steps: Kept-phase step numbers (from 1) of ``energy_trace``.
        nonfinite: ``(B,)`` mask of chains whose energy or position turned non-finite.
        acceptance: Per-chain mean acceptance probability over the kept steps, or ``None``.
        divergences: Per-chain count of divergent kept steps, or ``None``.
        n_grad_warmup: Per-chain gradient evaluations ``(B,)`` (long) during burn-in, when
            the backend counted them (``None``: the core derives them from the sampler's
            ``grads_per_step``, where it declares one).
        n_grad_sampling: The same over the kept-phase steps.
        tree_depth: Per-chain mean tree depth over the kept steps, when reported.
        n_steps_done: Steps run (burn-in included), when the run stopped early.
        stopped_early: ``"time_limit"`` or ``"should_stop"`` when the run stopped early.
        extra: Backend-specific diagnostics (a kernel's seed, compile time...), added last.
    """

    samples: torch.Tensor
    state: Any
    energy_trace: torch.Tensor
    energy_trace_steps: torch.Tensor
    nonfinite: torch.Tensor
    trajectory: torch.Tensor | None = None
    acceptance: torch.Tensor | None = None
    divergences: torch.Tensor | None = None
    n_grad_warmup: torch.Tensor | None = None
    n_grad_sampling: torch.Tensor | None = None
    tree_depth: torch.Tensor | None = None
    n_steps_done: int | None = None
    stopped_early: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A way to run a sampler's chains: torch step by step, a fused kernel, compiled blocks.

    Subclasses set :attr:`name` and implement :meth:`supports` and :meth:`run`; a plugin
    registers one through the ``ebmcore_backends`` hook (kind ``backend``), and
    ``Sampler.sample(backend=name)`` then finds it. ``backend="auto"`` considers every
    backend whose :meth:`supports` says yes: see :mod:`ebmcore.sampling.auto`.
    """

    #: The name users pass as ``Sampler.sample(backend=...)``.
    name: ClassVar[str] = ""
    #: Whether the backend calls ``on_keep`` at kept steps (a fused kernel that runs the
    #: whole loop in one call cannot, and is refused when the run has a hook).
    streams: ClassVar[bool] = False
    #: Whether the backend honours a run's ``time_limit`` and ``should_stop`` (checked
    #: between steps); ``auto`` picks only such backends for a run that has either, and a
    #: backend asked for by name without it is refused.
    stops: ClassVar[bool] = False
    #: Whether ``auto`` may time a few steps of it on the actual case. A backend whose first
    #: run costs far more than its steps (compiling a graph for seconds) says ``False`` and
    #: takes part through :meth:`rule_picks` only.
    measurable: ClassVar[bool] = True
    #: Order in which ``auto``'s rule asks :meth:`rule_picks` (lower first).
    rule_priority: ClassVar[int] = 100

    @abstractmethod
    def supports(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                 run: RunSpec) -> Reason:
        """Return ``None`` when this backend can run the case, else the reason it cannot.

        Cheap checks only: the sampler's kind and settings, the energy's declared faces, the
        chains' dtype and device. A failure found only when running (a compiler that cannot
        compile) raises :class:`~ebmcore.errors.BackendUnavailableError` from :meth:`run`.
        """

    @abstractmethod
    def run(self, sampler: Sampler, energy: Energy, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        """Run ``run.burn_in + run.n_steps`` steps of every chain from ``x0`` (never modified).

        Raises:
            BackendUnavailableError: When the backend turns out unable to run after all.
        """

    def timeable(self, x: torch.Tensor) -> bool:
        """Whether ``auto`` may time this backend on chains like ``x`` (``measurable``)."""
        return self.measurable

    def rule_picks(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                   run: RunSpec) -> bool:
        """Whether ``auto``'s rule for short runs prefers this backend to torch (it can run).

        The default says no: a backend is then chosen by ``auto`` only when it measures
        faster on a long run.
        """
        return False

    def rule_reason(self, sampler: Sampler, energy: Energy, x: torch.Tensor) -> str:
        """One line on why :meth:`rule_picks` said yes, for the diagnostics."""
        return f"{self.name}'s rule"

    def case_key(self, sampler: Sampler, energy: Energy, x: torch.Tensor) -> tuple[Any, ...]:
        """What besides the energy type, D, dtype, device, sampler and chain count sets this
        backend's speed on a case (a fused kernel's face cost); part of ``auto``'s cache key."""
        return ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend {self.name!r}>"
