"""The sampler contract: a pure, batched Markov kernel and the loop that runs it."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.validation import check_energy_output, check_int, check_points, same_device

BACKENDS: tuple[str, ...] = ("auto", "torch", "numba", "cuda", "compiled")

#: A hook :meth:`Sampler.sample` calls at every kept step with ``(k, x)``: the kept step's
#: index ``k`` (from 0) and the positions ``x`` of every chain ``(B, *event_shape)``.
KeepHook = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class RunSpec:
    """What a backend may need to know of a run besides its chains.

    :meth:`Sampler.sample` hands it to overrides of ``_auto_backend`` and ``_run_backend``
    that take a ``run`` parameter (a backend whose cost to start up only pays over a long
    run, or one that calls ``on_keep`` itself); overrides without one are called as before.

    Attributes:
        n_steps: Kept steps.
        burn_in: Steps run first.
        thin: Trajectory thinning.
        on_keep: The hook called at every kept step, or ``None``.
    """

    n_steps: int
    burn_in: int
    thin: int
    on_keep: KeepHook | None = None

    @property
    def n_total(self) -> int:
        """Every step of the run: ``burn_in + n_steps``."""
        return self.burn_in + self.n_steps


def _takes(method: Callable[..., Any], name: str) -> bool:
    """Whether ``method`` has a parameter ``name`` (older overrides may lack new ones)."""
    return name in inspect.signature(method).parameters


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
        trajectory: Kept positions ``(T, B, *event_shape)`` when asked for, else ``None``;
            ``(T, C, *event_shape)`` when ``trace_chains`` picked ``C`` of the ``B`` chains
            (column ``j`` is chain ``j * diagnostics["trajectory_stride"]``, see
            :func:`trace_stride`).
        diagnostics: ``backend`` (which backend ran), ``acceptance`` (per-chain mean
            acceptance probability over the kept steps, when the sampler reports one),
            ``divergences`` (per-chain count of divergent kept steps, when reported),
            ``energy_trace`` (mean energy at the kept steps listed in
            ``energy_trace_steps``: every kept step when the state carries energies, else
            a few evenly spaced ones, see ``Sampler.trace_spacing``),
            ``nonfinite_chains`` (indices of chains whose energy or position turned
            non-finite; they are reported, never replaced), ``trajectory_stride`` (when a
            trajectory was recorded: its columns are chains ``0, s, 2s, ...``), ``seconds``
            and whatever the sampler adds.
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
    #: Diagnostics that hold one value per chain (their first dimension): sampling with
    #: ``distributed=True`` gathers them in chain order, and averages other tensors over ranks.
    chain_diagnostics: tuple[str, ...] = ("acceptance", "divergences", "step_size")

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

    def _auto_backend(self, energy: Energy, x: torch.Tensor, run: RunSpec | None = None
                      ) -> str:
        """Return the backend ``"auto"`` picks (the fastest that applies; torch by default).

        ``run`` describes the run (:class:`RunSpec`); an override may leave the parameter
        out if it does not need it.
        """
        return "torch"

    def _choose_backend(self, energy: Energy, x: torch.Tensor, requested: str,
                        run: RunSpec | None = None) -> str:
        if requested not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
        if requested == "auto":
            if run is not None and _takes(self._auto_backend, "run"):
                return self._auto_backend(energy, x, run=run)
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
                     return_trajectory: bool, trace_stride: int = 1,
                     run: RunSpec | None = None) -> SampleResult:
        """Run a fused backend; record chains ``0, s, 2s, ...`` (``s = trace_stride``) only.

        An override that predates ``trace_stride`` (no such parameter) still works: the loop
        then asks it for every chain and keeps the subset, at the full trajectory's cost.
        ``run`` (:class:`RunSpec`, with the ``on_keep`` hook) reaches overrides that take it.
        """
        raise BackendUnavailableError(f"{type(self).__name__} has no {backend} backend")

    def sample(self, energy: Energy, x0: torch.Tensor, n_steps: int, *, burn_in: int = 0,
               thin: int = 1, generator: torch.Generator | None = None,
               return_trajectory: bool = False, trace_chains: int | None = None,
               on_keep: KeepHook | None = None, backend: str = "auto",
               progress: bool = False, distributed: bool = False) -> SampleResult:
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
            trace_chains: With ``return_trajectory``, record at most this many chains
                instead of all ``B`` (``None``: all): chains ``0, s, 2s, ...`` with
                ``s = ceil(B / trace_chains)`` (:func:`trace_stride`), so the trajectory
                holds ``ceil(B / s)`` columns and costs ``n_steps // thin * trace_chains``
                points of memory whatever ``B``. Chains run independently from exchangeable
                starts, so a fixed, evenly spread subset is as good as a random one, and it
                is deterministic: column ``j`` equals chain ``j * s`` of a full recording
                with the same seed, on every backend.
            on_keep: Called as ``on_keep(k, x)`` after kept step ``k`` (from 0) with the
                positions of every chain ``(B, *event_shape)``; ``x`` is the sampler's live
                state, to read or copy (e.g. into a file, :class:`TrajectoryFile`), never to
                modify. Only the ``torch`` backend runs step by step in Python: with a hook,
                ``"auto"`` picks ``"torch"`` and ``"numba"`` / ``"cuda"`` are refused.
            backend: ``"auto"``, ``"torch"``, ``"numba"``, ``"cuda"`` or ``"compiled"``.
            progress: Show a progress bar on a terminal.
            distributed: Split the chains over the ranks of the initialised
                ``torch.distributed`` process group (collective: every rank calls this with
                the same ``x0``, all the chains, and a ``generator`` seeded alike). Rank ``r``
                runs a contiguous block of chains (blocks of the trace stride, so the traced
                chains are those of an unsharded run) on its own stream derived from
                ``generator`` (:func:`ebmcore.distributed.rank_generator`); every rank
                returns the whole batch's ``samples``, ``trajectory`` and diagnostics
                (:func:`ebmcore.distributed.merge_diagnostics`), while ``state`` and the
                ``on_keep`` hook see its own chains, listed in ``diagnostics["shards"]``.
                Off by default: an initialised process group alone changes nothing.
        """
        energy = as_energy(energy)
        check_int("n_steps", n_steps, minimum=1)
        check_int("burn_in", burn_in, minimum=0)
        check_int("thin", thin, minimum=1)
        check_finite_points("x0", x0, energy.event_shape)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        if generator is not None and not same_device(generator.device, x0.device):
            raise ValueError(
                f"generator is on {generator.device} but x0 is on {x0.device}; "
                f"create the generator with torch.Generator(device=x0.device)"
            )
        if trace_chains is not None:
            check_int("trace_chains", trace_chains, minimum=1)
            if not return_trajectory:
                raise ValueError("trace_chains chooses the chains a trajectory records; pass "
                                 "return_trajectory=True with it")
        if on_keep is not None and not callable(on_keep):
            raise TypeError(f"on_keep must be a callable on_keep(k, x) or None, got "
                            f"{type(on_keep).__name__}")
        stride = trace_stride(x0.shape[0], trace_chains)
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {type(distributed).__name__}")
        run_args = {"burn_in": burn_in, "thin": thin, "on_keep": on_keep, "backend": backend}
        if distributed:
            from ebmcore.distributed import sample_sharded

            return sample_sharded(self._sample, energy, x0, n_steps, generator=generator,
                                  stride=stride, return_trajectory=return_trajectory,
                                  progress=progress, chain_keys=self.chain_diagnostics,
                                  **run_args)
        return self._sample(energy, x0, n_steps, generator=generator, stride=stride,
                            return_trajectory=return_trajectory, progress=progress, **run_args)

    def _sample(self, energy: Energy, x0: torch.Tensor, n_steps: int, *, burn_in: int,
                thin: int, generator: torch.Generator | None, return_trajectory: bool,
                stride: int, on_keep: KeepHook | None, backend: str,
                progress: bool) -> SampleResult:
        """The loop of :meth:`sample` over checked arguments, on this process's chains."""
        if generator is None:
            # A private generator, so that sampling never advances torch's global RNG.
            generator = torch.Generator(device=x0.device)
            generator.seed()
        if on_keep is not None and backend in ("numba", "cuda"):
            raise BackendUnavailableError(
                f"backend={backend!r} cannot call on_keep: its fused kernel runs the whole "
                f"chain loop in one call, with no Python between steps. Use backend='torch' "
                f"(or 'auto', which picks it when on_keep is given).")
        run = RunSpec(n_steps=n_steps, burn_in=burn_in, thin=thin, on_keep=on_keep)
        chosen = self._choose_backend(
            energy, x0, "torch" if on_keep is not None and backend == "auto" else backend, run)
        started = time.perf_counter()
        fallback = None
        if chosen != "torch":
            # 'auto' never fails where torch runs: a fused backend that turns out unable to
            # run (a CUDA toolchain that cannot compile, say) hands over to torch, from the
            # generator state it started with, and the diagnostics say why.
            rng_state = generator.get_state() if backend == "auto" else None
            try:
                result = self._run_fused(chosen, energy, x0, n_steps, burn_in, thin,
                                         generator, return_trajectory, stride, run)
            except BackendUnavailableError as exc:
                if rng_state is None:
                    raise
                generator.set_state(rng_state)
                fallback = f"backend {chosen!r} could not run, so torch ran instead: {exc}"
                chosen = "torch"
        if chosen == "torch":
            result = self._run_torch(energy, x0, n_steps, burn_in, thin, generator,
                                     return_trajectory, progress, stride, on_keep)
        if return_trajectory:
            result.diagnostics["trajectory_stride"] = stride
        result.diagnostics.setdefault("backend", chosen)
        result.diagnostics["backend_requested"] = backend
        if fallback is not None:
            result.diagnostics["backend_fallback"] = fallback
        result.diagnostics["seconds"] = time.perf_counter() - started
        return result

    def _run_fused(self, backend: str, energy: Energy, x0: torch.Tensor, n_steps: int,
                   burn_in: int, thin: int, generator: torch.Generator | None,
                   return_trajectory: bool, stride: int,
                   run: RunSpec | None = None) -> SampleResult:
        """Call :meth:`_run_backend`, asking for the chain subset where it can record one,
        and handing it ``run`` where it takes one."""
        extra = {"run": run} if run is not None and _takes(self._run_backend, "run") else {}
        if stride == 1 or not return_trajectory:
            return self._run_backend(backend, energy, x0, n_steps, burn_in, thin, generator,
                                     return_trajectory, **extra)
        if _takes(self._run_backend, "trace_stride"):
            return self._run_backend(backend, energy, x0, n_steps, burn_in, thin, generator,
                                     return_trajectory, trace_stride=stride, **extra)
        # An override that predates trace_stride: record every chain, keep the subset.
        result = self._run_backend(backend, energy, x0, n_steps, burn_in, thin, generator,
                                   return_trajectory, **extra)
        if result.trajectory is not None:
            result.trajectory = result.trajectory[:, ::stride].clone()
        return result

    def _run_torch(self, energy: Energy, x0: torch.Tensor, n_steps: int, burn_in: int,
                   thin: int, generator: torch.Generator | None, return_trajectory: bool,
                   progress: bool, stride: int = 1,
                   on_keep: KeepHook | None = None) -> SampleResult:
        from ebmcore.progress import ProgressBar

        state = self.init(energy, x0.detach().clone())
        bar = ProgressBar(burn_in + n_steps, enabled=progress, label=type(self).__name__)
        for i in range(burn_in):
            state, info = self.step(energy, state, generator)
            state = self.adapt(state, info, i, burn_in)
            bar.update()
        n_kept = n_steps // thin
        n_traced = -(-x0.shape[0] // stride)
        trajectory = (torch.empty((n_kept, n_traced, *x0.shape[1:]), dtype=x0.dtype,
                                  device=x0.device)
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
                    trajectory[kept].copy_(state.x if stride == 1 else state.x[::stride])
                if on_keep is not None:
                    on_keep(kept, state.x)
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


def trace_stride(n_chains: int, trace_chains: int | None) -> int:
    """Return the stride ``s`` of the chains a trajectory records: chains ``0, s, 2s, ...``.

    ``s = ceil(n_chains / trace_chains)``, so at most ``trace_chains`` chains (exactly
    ``ceil(n_chains / s)``) spread evenly over the batch; 1 (every chain) for ``None`` or
    ``trace_chains >= n_chains``.

    Args:
        n_chains: The batch size ``B``.
        trace_chains: The most chains to record, or ``None`` for all.
    """
    check_int("n_chains", n_chains, minimum=1)
    if trace_chains is None:
        return 1
    check_int("trace_chains", trace_chains, minimum=1)
    return max(1, -(-n_chains // trace_chains))


class TrajectoryFile:
    """An ``on_keep`` hook that streams every kept step into a ``.npy`` file.

    :func:`numpy.lib.format.open_memmap` creates the file at its final size (header, then
    ``(T, B, *event_shape)`` values, C order; sparse until written), and each kept step is
    written at its offset as it comes: one row of ``B * D`` values, so the hook holds one
    row at a time whatever ``T`` and ``B``. Read it back with
    ``numpy.load(path, mmap_mode="r")``. Use it as a context manager, or call :meth:`close`.

    Args:
        path: The ``.npy`` file to create (replaced if it exists).
        n_kept: Number of kept steps ``T`` (``n_steps // thin``).
        shape: Positions' shape ``(B, *event_shape)``.
        dtype: The positions' dtype (``torch.float32`` or ``torch.float64``).
        columns: The chains ``[start, stop)`` this writer fills, when several writers (the
            ranks of sharded sampling) share the file; the hook then gets ``stop - start``
            rows. ``None``: all of them.
        create: Create the file; ``False`` opens one of this shape that another writer
            created.
    """

    def __init__(self, path: str | Path, n_kept: int, shape: tuple[int, ...] | torch.Size,
                 dtype: torch.dtype, *, columns: tuple[int, int] | None = None,
                 create: bool = True) -> None:
        import numpy as np

        check_int("n_kept", n_kept, minimum=1)
        self.path = Path(path)
        self.shape = (n_kept, *(int(n) for n in shape))
        self.dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self._torch_dtype = dtype
        start, stop = (0, self.shape[1]) if columns is None else columns
        if not 0 <= start < stop <= self.shape[1]:
            raise ValueError(f"columns {columns} are not chains of the {self.shape[1]} in "
                             f"{self.path}")
        array = np.lib.format.open_memmap(self.path, mode="w+" if create else "r",
                                          dtype=self.dtype if create else None,
                                          shape=self.shape if create else None)
        if array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError(f"{self.path} holds {array.dtype} {array.shape}, not "
                             f"{self.dtype} {self.shape}")
        chain_bytes = math.prod(self.shape[2:]) * self.dtype.itemsize
        self._offset = int(array.offset) + start * chain_bytes
        del array  # unmapped: rows go in through plain writes, never a mapping of the file
        self._row_bytes = self.shape[1] * chain_bytes
        self._rows = (stop - start, *self.shape[2:])
        self._file: Any = open(self.path, "r+b")  # noqa: SIM115 - closed by close()
        #: Number of rows written so far.
        self.written = 0

    def __call__(self, k: int, x: torch.Tensor) -> None:
        """Write kept step ``k``'s positions ``x`` ``(B, *event_shape)``."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        if not 0 <= k < self.shape[0] or tuple(x.shape) != self._rows:
            raise ValueError(f"kept step {k} with positions {tuple(x.shape)} does not fit "
                             f"{self.path}, shaped {self.shape} (this writer's chains: "
                             f"{self._rows[0]})")
        row = x.detach().to("cpu", self._torch_dtype).contiguous().numpy()
        self._file.seek(self._offset + k * self._row_bytes)
        self._file.write(row.data)
        self.written += 1

    @property
    def complete(self) -> bool:
        """Whether every kept step was written."""
        return self.written == self.shape[0]

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TrajectoryFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
