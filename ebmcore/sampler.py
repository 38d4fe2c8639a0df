"""The sampler contract: a pure, batched Markov kernel, and the one loop that runs it.

A :class:`Sampler` implements ``init`` / ``step`` (and ``adapt``); :meth:`Sampler.sample`
checks the arguments, picks a backend (:mod:`ebmcore.sampling`: torch here in the core, the
fused and compiled ones from plugins), runs it, falls back to torch where ``auto``'s pick
cannot run after all, and builds the diagnostics from what the backend returns, in one place
(:func:`_result`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampling.auto import Choice, choose
from ebmcore.sampling.backend import KeepHook, RawRun, RunSpec
from ebmcore.sampling.lookup import find_backend, registered_backends
from ebmcore.sampling.recording import nonfinite_rows
from ebmcore.sampling.torch_loop import TorchBackend
from ebmcore.sampling.trajectory_file import TrajectoryFile
from ebmcore.validation import check_energy_output, check_int, check_points, same_device

#: Private hooks through which samplers used to gain backends (the loop no longer calls them).
_RETIRED_HOOKS = ("_backends_for", "_auto_backend", "_run_backend", "_run_fused", "_run_torch",
                  "_choose_backend")

#: The built-in backend names (plugins may register more; ``"auto"`` picks among them).
BACKENDS: tuple[str, ...] = ("auto", "torch", "numba", "cuda", "compiled", "async")

__all__ = ["BACKENDS", "KeepHook", "RunSpec", "SampleResult", "Sampler", "SamplerState",
           "TrajectoryFile", "check_finite_points", "nonfinite_rows", "trace_stride"]


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
        diagnostics: ``backend`` (which backend ran), ``backend_requested``,
            ``backend_reason`` (why that one: ``"requested"``, the rule, or a timed trial's
            predictions; ``backend_trial_seconds`` when ``auto`` timed backends for this
            run), ``backend_fallback`` (when ``auto``'s pick could not run),
            ``acceptance`` (per-chain mean acceptance probability over the kept steps,
            when the sampler reports one),
            ``divergences`` (per-chain count of divergent kept steps, when reported),
            ``n_grad_warmup`` and ``n_grad_sampling`` (per-chain gradient evaluations
            ``(B,)`` long during burn-in and the kept steps, for samplers that report
            ``n_grad`` or declare ``grads_per_step``), ``tree_depth`` (per-chain mean
            over the kept steps, when reported), ``stopped_early`` (``"time_limit"`` or
            ``"should_stop"``, with ``n_steps_done`` and ``burn_in_done``, when the run
            stopped early),
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

    Subclasses implement :meth:`init` and :meth:`step`; :meth:`sample` then works as is, on
    the torch backend and on any backend whose ``supports`` accepts the sampler. A subclass
    that adapts its parameters during burn-in overrides :meth:`adapt`.
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
    chain_diagnostics: tuple[str, ...] = ("acceptance", "divergences", "step_size",
                                          "n_grad_warmup", "n_grad_sampling", "tree_depth")
    #: Gradient evaluations per step when fixed (HMC: ``n_leapfrog``), so that backends
    #: that do not return step infos still report ``n_grad_warmup`` / ``n_grad_sampling``;
    #: ``None`` when the sampler reports ``n_grad`` per step only (NUTS) or has no gradient.
    grads_per_step: int | None = None
    #: Whether the sampler has a compiled step (``backend="compiled"``, what
    #: ``Trainer(compile=True)`` and :meth:`ebmcore.Loss.use_compiled` need).
    supports_compiled: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        retired = [name for name in _RETIRED_HOOKS if name in vars(cls)]
        if retired:
            warnings.warn(
                f"{cls.__qualname__} overrides {', '.join(retired)}, which Sampler.sample no "
                f"longer calls: a backend is now an ebmcore.sampling.Backend object registered "
                f"through the ebmcore_backends hook (see docs/kernels.md, 'Writing a "
                f"backend')", DeprecationWarning, stacklevel=2)

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

    def sample(self, energy: Energy, x0: torch.Tensor, n_steps: int, *, burn_in: int = 0,
               thin: int = 1, generator: torch.Generator | None = None,
               return_trajectory: bool = False, trace_chains: int | None = None,
               on_keep: KeepHook | None = None, backend: str = "auto",
               progress: bool = False, distributed: bool = False,
               time_limit: float | None = None,
               should_stop: Callable[[], bool] | None = None) -> SampleResult:
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
            backend: ``"auto"``, ``"torch"`` or a registered backend's name (built in:
                ``"numba"``, ``"cuda"``, ``"compiled"``, ``"async"``; see
                :mod:`ebmcore.sampling`).
                ``"auto"`` picks the fastest that can run, by a rule for short runs and by
                timing a few steps of each on long ones (:mod:`ebmcore.sampling.auto`);
                ``diagnostics["backend"]`` and ``["backend_reason"]`` say which and why.
            progress: Show a progress bar on a terminal.
            distributed: Split the chains over the ranks of the initialised
                ``torch.distributed`` process group (collective: every rank calls this with
                the same ``x0``, all the chains, and a ``generator`` seeded alike). Rank ``r``
                runs a contiguous block of chains (blocks of the trace stride, so the traced
                chains are those of an unsharded run) on its own stream derived from
                ``generator`` (:func:`ebmcore.ranks.rank_generator`); every rank
                returns the whole batch's ``samples``, ``trajectory`` and diagnostics
                (:func:`ebmcore.sharded_sampling.merge_diagnostics`), while ``state`` and the
                ``on_keep`` hook see its own chains, listed in ``diagnostics["shards"]``.
                Off by default: an initialised process group alone changes nothing.
            time_limit: Seconds (a positive, finite number) after which the run stops
                cleanly at the end of the current step, burn-in included, and returns what
                it has: ``samples`` where the chains are, the trajectory cut to the kept
                steps recorded, and diagnostics ``stopped_early="time_limit"``,
                ``n_steps_done`` (kept-phase steps run) and ``burn_in_done``. Backends that
                do not return to Python between steps cannot honour it: ``"auto"`` then
                picks ``"torch"``, and naming such a backend raises.
            should_stop: A callable with no argument, asked after every step; the run
                stops as with ``time_limit`` (``stopped_early="should_stop"``) when it
                returns true. For cancelling a run from another thread or a UI.
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
        check_time_limit(time_limit)
        if should_stop is not None and not callable(should_stop):
            raise TypeError(f"should_stop must be a callable with no argument or None, got "
                            f"{type(should_stop).__name__}")
        stride = trace_stride(x0.shape[0], trace_chains)
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {type(distributed).__name__}")
        run_args = {"burn_in": burn_in, "thin": thin, "on_keep": on_keep, "backend": backend,
                    "time_limit": time_limit, "should_stop": should_stop}
        if distributed and (time_limit is not None or should_stop is not None):
            raise ValueError("time_limit and should_stop cannot be used with "
                             "distributed=True: ranks would stop after different steps")
        if distributed:
            from ebmcore.sharded_sampling import sample_sharded

            return sample_sharded(self._sample, energy, x0, n_steps, generator=generator,
                                  stride=stride, return_trajectory=return_trajectory,
                                  progress=progress, chain_keys=self.chain_diagnostics,
                                  **run_args)
        return self._sample(energy, x0, n_steps, generator=generator, stride=stride,
                            return_trajectory=return_trajectory, progress=progress, **run_args)

    def _sample(self, energy: Energy, x0: torch.Tensor, n_steps: int, *, burn_in: int,
                thin: int, generator: torch.Generator | None, return_trajectory: bool,
                stride: int, on_keep: KeepHook | None, backend: str,
                progress: bool, time_limit: float | None = None,
                should_stop: Callable[[], bool] | None = None) -> SampleResult:
        """The loop of :meth:`sample` over checked arguments, on this process's chains."""
        if generator is None:
            # A private generator, so that sampling never advances torch's global RNG.
            generator = torch.Generator(device=x0.device)
            generator.seed()
        run = RunSpec(n_steps=n_steps, burn_in=burn_in, thin=thin, on_keep=on_keep,
                      return_trajectory=return_trajectory, trace_stride=stride,
                      time_limit=None if time_limit is None else float(time_limit),
                      should_stop=should_stop)
        torch_backend = TorchBackend(progress=progress)
        choice = self._choice(energy, x0, backend, run, torch_backend)
        started = time.perf_counter()
        fallback = None
        can_fall_back = backend == "auto" and choice.backend is not torch_backend
        rng_state = generator.get_state() if can_fall_back else None
        try:
            raw = choice.backend.run(self, energy, x0, run, generator)
        except BackendUnavailableError as exc:
            # 'auto' never fails where torch runs: a backend that turns out unable to run
            # (a CUDA toolchain that cannot compile, say) hands over to torch, from the
            # generator state it started with, and the diagnostics say why.
            if rng_state is None:
                raise
            generator.set_state(rng_state)
            fallback = (f"backend {choice.backend.name!r} could not run, so torch ran "
                        f"instead: {exc}")
            choice = Choice(torch_backend, choice.reason)
            raw = torch_backend.run(self, energy, x0, run, generator)
        result = self._result(raw, run, choice, backend)
        if fallback is not None:
            result.diagnostics["backend_fallback"] = fallback
        result.diagnostics["seconds"] = time.perf_counter() - started
        return result

    def choose_backend(self, energy: Energy, x0: torch.Tensor, n_steps: int, *,
                       burn_in: int = 0, backend: str = "auto",
                       on_keep: KeepHook | None = None) -> Choice:
        """Return the backend :meth:`sample` would run on this case, and why.

        For ``backend="auto"`` on a run long enough to time backends this times them now
        (and caches the winner, so the :meth:`sample` that follows reuses it).

        Args:
            energy: The target.
            x0: Initial positions ``(B, *event_shape)``.
            n_steps: Kept steps.
            burn_in: Burn-in steps.
            backend: ``"auto"``, ``"torch"`` or a registered backend's name.
            on_keep: The hook the run would call, if any.

        Raises:
            BackendUnavailableError: The backend asked for cannot run this case.
        """
        energy = as_energy(energy)
        run = RunSpec(n_steps=n_steps, burn_in=burn_in, on_keep=on_keep)
        return self._choice(energy, x0, backend, run, TorchBackend())

    def _choice(self, energy: Energy, x0: torch.Tensor, backend: str, run: RunSpec,
                torch_backend: TorchBackend) -> Choice:
        if backend in ("auto", "torch"):
            backends = registered_backends()[0] if backend == "auto" else {}
        else:
            backends = {backend: find_backend(backend)}
        return choose(self, energy, x0, backend, run, torch_backend, backends)

    def _result(self, raw: RawRun, run: RunSpec, choice: Choice,
                requested: str) -> SampleResult:
        """Turn a backend's :class:`~ebmcore.sampling.RawRun` into the documented result."""
        diagnostics: dict[str, Any] = {
            "backend": choice.backend.name,
            "energy_trace": raw.energy_trace,
            "energy_trace_steps": raw.energy_trace_steps,
            "nonfinite_chains": torch.nonzero(raw.nonfinite).flatten(),
            "n_steps": run.n_steps, "burn_in": run.burn_in, "thin": run.thin,
        }
        if raw.acceptance is not None:
            diagnostics["acceptance"] = raw.acceptance
        if raw.divergences is not None:
            diagnostics["divergences"] = raw.divergences
        diagnostics.update(self._counts(raw, run))
        if raw.state is not None:
            diagnostics.update(self.final_diagnostics(raw.state))
        diagnostics.update(raw.extra)
        if run.return_trajectory:
            diagnostics["trajectory_stride"] = run.trace_stride
        diagnostics["backend_requested"] = requested
        diagnostics["backend_reason"] = choice.reason
        if choice.trial_seconds:
            diagnostics["backend_trial_seconds"] = choice.trial_seconds
        return SampleResult(samples=raw.samples, trajectory=raw.trajectory,
                            diagnostics=diagnostics, state=raw.state)

    def _counts(self, raw: RawRun, run: RunSpec) -> dict[str, Any]:
        """Gradient counts, tree depth and the early stop, from a backend's raw run."""
        out: dict[str, Any] = {}
        done = run.n_total if raw.n_steps_done is None else raw.n_steps_done
        burn_in_done = min(done, run.burn_in)
        steps_done = done - burn_in_done
        warm, kept = raw.n_grad_warmup, raw.n_grad_sampling
        b = raw.samples.shape[0]
        device = raw.samples.device
        if self.grads_per_step is not None:
            if warm is None:
                warm = torch.full((b,), self.grads_per_step * burn_in_done, dtype=torch.long,
                                  device=device)
            if kept is None:
                kept = torch.full((b,), self.grads_per_step * steps_done, dtype=torch.long,
                                  device=device)
        if warm is not None or kept is not None:
            zeros = torch.zeros(b, dtype=torch.long, device=device)
            out["n_grad_warmup"] = zeros if warm is None else warm
            out["n_grad_sampling"] = zeros.clone() if kept is None else kept
        if raw.tree_depth is not None:
            out["tree_depth"] = raw.tree_depth
        if raw.stopped_early is not None:
            out["stopped_early"] = raw.stopped_early
            out["n_steps_done"] = steps_done
            out["burn_in_done"] = burn_in_done
        return out

    def final_diagnostics(self, state: Any) -> dict[str, Any]:
        """Extra diagnostics from the final state (adapted step sizes, for instance)."""
        return {}


def check_time_limit(time_limit: Any) -> float | None:
    """Return ``time_limit`` as seconds after checking it is ``None`` or a positive, finite
    number (``bool`` refused).

    Args:
        time_limit: The value passed as ``Sampler.sample(time_limit=...)``.
    """
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)):
        raise TypeError(f"time_limit must be a number of seconds or None, got "
                        f"{type(time_limit).__name__}")
    if not math.isfinite(time_limit) or time_limit <= 0:
        raise ValueError(f"time_limit must be a positive, finite number of seconds, got "
                         f"{time_limit!r}")
    return float(time_limit)


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


def check_finite_points(name: str, x: Any, event_shape: Any = None) -> torch.Tensor:
    """:func:`~ebmcore.validation.check_points`, with a one-pass finiteness test.

    A sum is finite when every term is; only when it is not (a non-finite value, or an
    overflow of huge finite ones) does the exact, slower check run and name the rows.
    """
    check_points(name, x, event_shape, finite=False)
    if not bool(torch.isfinite(x.sum())):
        check_points(name, x, event_shape, finite=True)
    return x
