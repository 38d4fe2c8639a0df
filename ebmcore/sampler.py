"""The sampler contract: a pure, batched Markov kernel and the loop that runs it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.validation import check_energy_output, check_int, check_points

BACKENDS: tuple[str, ...] = ("auto", "torch", "numba", "cuda")


@dataclass
class SamplerState:
    """The state of a batch of chains; samplers may subclass it to carry more.

    Attributes:
        x: Current positions ``(B, *event_shape)``; the state owns this tensor, and steps
            may update it in place.
        energy: Cached energies ``(B,)`` at ``x``, or ``None`` when the sampler does not need
            them (the loop then evaluates the energy where the diagnostics need it).
        grad: Cached gradients at ``x`` (``None`` for gradient-free samplers).
        need_energy: Set by the sampling loop before a step whose energy it will record; a
            sampler that skips energies (``energy is None``) computes them on that step,
            e.g. with ``energy_and_grad``, which costs less than a separate evaluation.
    """

    x: torch.Tensor
    energy: torch.Tensor | None
    grad: torch.Tensor | None = None
    need_energy: bool = False


@dataclass
class SampleResult:
    """What :meth:`Sampler.sample` returns.

    Attributes:
        samples: The final positions ``(B, *event_shape)`` (a copy, independent of ``state``).
        trajectory: Kept positions ``(T, B, *event_shape)`` when asked for, else ``None``.
        diagnostics: ``backend`` (which backend ran), ``acceptance`` (per-chain mean
            acceptance probability over the kept steps, when the sampler reports one),
            ``divergences`` (per-chain count of divergent kept steps, when reported),
            ``energy_trace`` (mean energy at the kept steps listed in
            ``energy_trace_steps``: every kept step when the state carries energies, else
            a few evenly spaced ones, see ``Sampler.trace_spacing``),
            ``nonfinite_chains`` (indices of chains whose energy or position turned
            non-finite; they are reported, never replaced), ``seconds`` and whatever the
            sampler adds.
        state: The final sampler state, to continue sampling from.
    """

    samples: torch.Tensor
    trajectory: torch.Tensor | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    state: Any = None


class Sampler:
    """Base class of every sampler.

    Subclasses implement :meth:`init` and :meth:`step`; :meth:`sample` then works as is.
    A subclass that adapts its parameters during burn-in overrides :meth:`adapt`; one that
    ships fused kernels overrides :meth:`_run_backend` and :meth:`_backends_for`.
    """

    #: Name of the info entry that holds a per-chain acceptance probability.
    acceptance_key: str | None = None
    #: Name of the info entry that flags per-chain divergent transitions.
    divergence_key: str | None = None
    #: When the sampler's state carries no energy (``state.energy is None``), the loop
    #: evaluates the energy for ``energy_trace`` at one kept step in ``trace_spacing`` (at
    #: least 2, at most ``max_trace_evaluations``, evenly spaced, the last one included),
    #: so that the diagnostics cost about 1 % of the run.
    max_trace_evaluations: int = 10
    trace_spacing: int = 50

    def init(self, energy: Energy, x: torch.Tensor) -> SamplerState:
        """Return the state of chains at ``x``, caching their energy (and gradient).

        The state owns its tensors: implementations copy ``x`` so that steps may update the
        state in place without touching the caller's tensor.
        """
        with torch.no_grad():
            e = check_energy_output(energy, x, energy(x).detach())
        return SamplerState(x=x.detach().clone(), energy=e)

    def step(self, energy: Energy, state: Any,
             generator: torch.Generator | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
        """Advance every chain once; return the new state and per-chain info tensors.

        Built-in samplers update the state's tensors in place and return the same object;
        ``info`` maps names (``acceptance_key``, ``divergence_key``...) to ``(B,)`` tensors.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def adapt(self, state: Any, info: dict[str, torch.Tensor], iteration: int,
              n_adapt: int) -> Any:
        """Tune the sampler during burn-in (called after each burn-in step). No-op by default."""
        return state

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's tunable parameters and schedules for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def _backends_for(self, energy: Energy, x: torch.Tensor) -> dict[str, str | None]:
        """Map each backend to ``None`` when it can serve, else to the reason it cannot."""
        return {"torch": None, "numba": f"{type(self).__name__} has no numba kernel",
                "cuda": f"{type(self).__name__} has no CUDA kernel"}

    def _auto_backend(self, energy: Energy, x: torch.Tensor) -> str:
        """Return the backend ``"auto"`` picks (the fastest that applies; torch by default)."""
        return "torch"

    def _choose_backend(self, energy: Energy, x: torch.Tensor, requested: str) -> str:
        if requested not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
        if requested == "auto":
            return self._auto_backend(energy, x)
        reasons = self._backends_for(energy, x)
        reason = reasons.get(requested, f"unknown backend {requested!r}")
        if reason is not None:
            usable = [b for b, r in reasons.items() if r is None]
            raise BackendUnavailableError(
                f"backend={requested!r} cannot run here: {reason}. "
                f"Usable backends: {', '.join(usable) or 'none'} (or backend='auto')."
            )
        return requested

    def _run_backend(self, backend: str, energy: Energy, x0: torch.Tensor, n_steps: int,
                     burn_in: int, thin: int, generator: torch.Generator | None,
                     return_trajectory: bool) -> SampleResult:
        raise BackendUnavailableError(f"{type(self).__name__} has no {backend} backend")

    def sample(self, energy: Energy, x0: torch.Tensor, n_steps: int, *, burn_in: int = 0,
               thin: int = 1, generator: torch.Generator | None = None,
               return_trajectory: bool = False, backend: str = "auto",
               progress: bool = False) -> SampleResult:
        """Run ``burn_in`` adaptation steps then ``n_steps`` kept steps from ``x0``.

        Args:
            energy: The target, an :class:`ebmcore.Energy`.
            x0: Initial positions ``(B, *event_shape)``; never modified in place.
            n_steps: Number of steps after burn-in (at least 1).
            burn_in: Steps run first, during which the sampler may adapt; not recorded.
            thin: Keep every ``thin``-th step in the trajectory.
            generator: Source of randomness; the same seed gives the same bits. With
                ``None`` a fresh, non-deterministically seeded generator is used (torch's
                global RNG is never touched).
            return_trajectory: Also return the kept positions ``(n_steps // thin, B, ...)``.
            backend: ``"auto"``, ``"torch"``, ``"numba"`` or ``"cuda"``.
            progress: Show a progress bar on a terminal.
        """
        energy = as_energy(energy)
        check_int("n_steps", n_steps, minimum=1)
        check_int("burn_in", burn_in, minimum=0)
        check_int("thin", thin, minimum=1)
        check_finite_points("x0", x0, energy.event_shape)
        if generator is not None and generator.device != x0.device:
            raise ValueError(
                f"generator is on {generator.device} but x0 is on {x0.device}; "
                f"create the generator with torch.Generator(device=x0.device)"
            )
        if generator is None:
            # A private generator, so that sampling never advances torch's global RNG.
            generator = torch.Generator(device=x0.device)
            generator.seed()
        chosen = self._choose_backend(energy, x0, backend)
        started = time.perf_counter()
        if chosen != "torch":
            result = self._run_backend(chosen, energy, x0, n_steps, burn_in, thin, generator,
                                       return_trajectory)
        else:
            result = self._run_torch(energy, x0, n_steps, burn_in, thin, generator,
                                     return_trajectory, progress)
        result.diagnostics.setdefault("backend", chosen)
        result.diagnostics["backend_requested"] = backend
        result.diagnostics["seconds"] = time.perf_counter() - started
        return result

    def _run_torch(self, energy: Energy, x0: torch.Tensor, n_steps: int, burn_in: int,
                   thin: int, generator: torch.Generator | None, return_trajectory: bool,
                   progress: bool) -> SampleResult:
        from ebmcore.progress import ProgressBar

        state = self.init(energy, x0.detach().clone())
        bar = ProgressBar(burn_in + n_steps, enabled=progress, label=type(self).__name__)
        for i in range(burn_in):
            state, info = self.step(energy, state, generator)
            state = self.adapt(state, info, i, burn_in)
            bar.update()
        n_kept = n_steps // thin
        trajectory = (torch.empty((n_kept, *x0.shape), dtype=x0.dtype, device=x0.device)
                      if return_trajectory else None)
        # Samplers whose state carries no energy (ULA with a closed-form gradient) get it
        # evaluated at a few evenly spaced kept steps only, so the trace costs next to nothing.
        n_evals = min(self.max_trace_evaluations, max(2, n_kept // self.trace_spacing))
        evaluate_at = set(_evenly_spaced(n_kept, n_evals))
        trace: list[torch.Tensor] = []
        trace_steps: list[int] = []
        # One fused op per step flags non-finite energies: 0 * inf and 0 * nan are nan, so
        # the accumulator turns nan for a chain once its energy was non-finite, and stays so.
        poison = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        accept_sum = divergent_sum = None
        kept = 0
        hints = hasattr(state, "need_energy")
        for i in range(n_steps):
            keep = (i + 1) % thin == 0 and kept < n_kept
            if hints:
                state.need_energy = keep and kept in evaluate_at
            state, info = self.step(energy, state, generator)
            e = state.energy
            if e is not None:
                poison.add_(e, alpha=0.0)
            if self.acceptance_key is not None and self.acceptance_key in info:
                a = info[self.acceptance_key]
                accept_sum = a.clone() if accept_sum is None else accept_sum.add_(a)
            if self.divergence_key is not None and self.divergence_key in info:
                d = info[self.divergence_key]
                divergent_sum = (d.long() if divergent_sum is None
                                 else divergent_sum.add_(d))
            if keep:
                if e is None and kept in evaluate_at:
                    e = self._energy_of(energy, state.x)
                    poison.add_(e, alpha=0.0)
                if e is not None:
                    trace.append(e.mean())
                    trace_steps.append(i + 1)
                if trajectory is not None:
                    trajectory[kept].copy_(state.x)
                kept += 1
            # reading the acceptance syncs with the device, so only when the bar redraws
            extra = (f"acceptance {float(accept_sum.mean()) / (i + 1):.3f}"
                     if accept_sum is not None and bar.due() else None)
            bar.update(extra=extra)
        bar.close()
        # Non-finite positions are absorbing for the unadjusted kernels, so a final check
        # also catches chains that blew up between the recorded steps.
        if state.energy is not None:
            poison.add_(state.energy, alpha=0.0)
        nonfinite = nonfinite_rows(state.x)
        if not bool(torch.isfinite(poison.sum())):  # one cheap reduction in the common case
            nonfinite |= torch.isnan(poison)
        diagnostics: dict[str, Any] = {
            "energy_trace": (torch.stack(trace) if trace
                             else torch.empty(0, dtype=x0.dtype, device=x0.device)),
            "energy_trace_steps": torch.tensor(trace_steps, dtype=torch.long),
            "nonfinite_chains": torch.nonzero(nonfinite).flatten(),
            "n_steps": n_steps, "burn_in": burn_in, "thin": thin,
        }
        if accept_sum is not None:
            diagnostics["acceptance"] = accept_sum / n_steps
        if divergent_sum is not None:
            diagnostics["divergences"] = divergent_sum
        diagnostics.update(self.final_diagnostics(state))
        return SampleResult(samples=state.x.clone(), trajectory=trajectory,
                            diagnostics=diagnostics, state=state)

    @staticmethod
    def _energy_of(energy: Energy, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return energy(x).detach()

    def final_diagnostics(self, state: Any) -> dict[str, Any]:
        """Extra diagnostics from the final state (adapted step sizes, for instance)."""
        return {}


def check_finite_points(name: str, x: Any, event_shape: Any = None) -> torch.Tensor:
    """:func:`~ebmcore.validation.check_points`, with a one-pass finiteness test.

    A sum is finite when every term is; only when it is not (a non-finite value, or an
    overflow of huge finite ones) does the exact, slower check run and name the rows.
    """
    check_points(name, x, event_shape, finite=False)
    if not bool(torch.isfinite(x.sum())):
        check_points(name, x, event_shape, finite=True)
    return x


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """Return a ``(B,)`` mask of the rows of ``x`` that hold a non-finite value.

    A finite total proves every row finite in one fast reduction; otherwise (a non-finite
    value, or huge finite values whose sum overflows) every row is checked exactly.
    """
    flat = x.detach().reshape(x.shape[0], -1)
    if bool(torch.isfinite(flat.sum())):
        return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    return ~torch.isfinite(flat).all(1)


def _evenly_spaced(n: int, k: int) -> list[int]:
    """Return up to ``k`` indices spread evenly over ``range(n)``, always including the last."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({round((j + 1) * n / k) - 1 for j in range(k)})
