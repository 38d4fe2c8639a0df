"""The compiled backend as a strategy: the sampler that declares a compiled step, the loop
over compiled blocks, and the :class:`CompiledBackend` object registered for it.

See the package's docstring (:mod:`ebmcore_samplers.compiled`) for what it does and why.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler
from ebmcore.sampling import Backend, RawRun, Reason, Recorder, RunSpec, nonfinite_rows
from ebmcore.sampling.recording import Tallies

from .backend import (
    BLOCK_GRADS,
    CPU_CHUNK,
    CompiledPlan,
    Draws,
    _Block,
    _compiled_block,
    auto_picks_compiled,
    chunk_size,
    closed_form,
    compiled_reason,
    compiler_reason,
)


class CompiledSampler:
    """What a torch sampler declares to run on ``backend="compiled"``; list it first among
    the bases.

    The sampler implements ``_compiled_plan(energy, state, draws) -> CompiledPlan`` and,
    when it adapts during burn-in, ``_compiled_adapts() -> bool``. Tuning knobs (class or
    instance attributes): ``compile_block`` (gradient evaluations per compiled block),
    ``compile_mode`` (``None``: ``"reduce-overhead"`` on CUDA, ``"default"`` elsewhere) and
    ``compile_chunk`` (the most chains per compiled call).
    """

    #: Gradient evaluations per compiled block: longer blocks amortise the call, shorter
    #: ones compile faster (compile time grows with the unrolled graph).
    compile_block: int = BLOCK_GRADS
    #: ``torch.compile`` mode; ``None`` picks CUDA graphs on CUDA, the default elsewhere.
    compile_mode: str | None = None
    #: Most chains per compiled call (see :func:`chunk_size`): ``"auto"`` is
    #: ``CPU_CHUNK`` on a CPU (cache-sized chunks) and every chain on CUDA (one launch).
    compile_chunk: int | str | None = "auto"
    #: Whether ``backend="compiled"`` is available (what ``Trainer(compile=True)`` checks).
    supports_compiled: ClassVar[bool] = True
    #: Rows stepped per chain (parallel tempering's replicas), for the ``auto`` rule.
    compiled_rows_per_chain: int = 1

    def _compiled_plan(self, energy: Energy, state: Any, draws: Draws) -> CompiledPlan:
        raise NotImplementedError(f"{type(self).__name__} must implement _compiled_plan()")

    def _compiled_adapts(self) -> bool:
        """Whether burn-in adapts (and so runs on the torch backend before the blocks)."""
        return False

    def compiled_refusal(self) -> str | None:
        """Why this sampler's settings cannot run compiled, or ``None`` (by default)."""
        return None


#: The former name of :class:`CompiledSampler` (it no longer overrides the sampling loop).
CompiledBackendMixin = CompiledSampler


class CompiledFlagSampler:
    """A sampler that compiles its own inner calls when built with ``compiled=True`` (NUTS's
    energy-and-gradient calls, ChEES's leapfrog blocks): its iterations change length, so
    no fixed block can be its step. ``backend="compiled"`` runs a copy of it with the flag
    set, on the backend that sampler picks (NUTS with ``asynchronous=True``: ``async``,
    unless the run calls ``on_keep``; otherwise ``torch``)."""

    compiled: bool = False


class CompiledBackend(Backend):
    """``backend="compiled"``: blocks of torch steps traced by ``torch.compile``."""

    name: ClassVar[str] = "compiled"
    streams: ClassVar[bool] = True
    #: Compiling a block costs seconds: ``auto`` takes it on the rule's word, untimed.
    measurable: ClassVar[bool] = False
    rule_priority: ClassVar[int] = 20

    def supports(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                 run: RunSpec) -> Reason:
        """``None`` for a :class:`CompiledSampler` or :class:`CompiledFlagSampler` and chains
        torch.compile can take."""
        if isinstance(sampler, CompiledFlagSampler):
            return compiler_reason(x)
        if not isinstance(sampler, CompiledSampler):
            return f"{type(sampler).__name__} has no compiled step"
        return sampler.compiled_refusal() or compiled_reason(x)

    def rule_picks(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                   run: RunSpec) -> bool:
        """:func:`~.backend.auto_picks_compiled`: a neural energy and a long enough run (a
        :class:`CompiledFlagSampler` is compiled by its flag, not by ``auto``)."""
        if isinstance(sampler, CompiledFlagSampler):
            return False
        rows = sampler.compiled_rows_per_chain if isinstance(sampler, CompiledSampler) else 1
        return auto_picks_compiled(energy, x, run.n_total, rows)

    def rule_reason(self, sampler: Sampler, energy: Energy, x: torch.Tensor) -> str:
        """Say why compiling repays."""
        return (f"compiled for an autograd-gradient {type(energy).__name__} over a run long "
                f"enough to repay compiling")

    def run(self, sampler: Sampler, energy: Energy, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        """Run :func:`run_compiled` (a :class:`CompiledFlagSampler`: a copy with its flag set)."""
        if isinstance(sampler, CompiledFlagSampler):
            return _run_flagged(sampler, energy, x0, run, generator)
        if not isinstance(sampler, CompiledSampler):
            raise BackendUnavailableError(f"{type(sampler).__name__} has no compiled step")
        return run_compiled(sampler, energy, x0, run, generator)


def _run_flagged(sampler: Any, energy: Energy, x0: torch.Tensor, run: RunSpec,
                 generator: torch.Generator) -> RawRun:
    """Run a copy of a :class:`CompiledFlagSampler` with ``compiled=True`` where it runs."""
    from ebmcore.sampling.torch_loop import TorchBackend

    twin = copy.copy(sampler)
    twin.compiled = True
    inner: Backend = TorchBackend()
    if run.on_keep is None and getattr(twin, "asynchronous", False):
        from ebmcore_samplers.async_backend import AsyncBackend

        if AsyncBackend().supports(twin, energy, x0, run) is None:
            inner = AsyncBackend()
    return inner.run(twin, energy, x0, run, generator)


def _compiled_setup(sampler: Any, energy: Energy, x0: torch.Tensor, burn_in: int,
                    generator: torch.Generator
                    ) -> tuple[Any, CompiledPlan, Draws, int, Tallies, int]:
    """Initialise the chains, run an adapting burn-in eagerly, and build the plan.

    Returns ``(state, plan, draws, eager steps, their tallies, plan-time evaluations)``:
    the last counts gradient evaluations building the plan made per chain (a step-size
    search, where the eager steps did not run it).
    """
    state = sampler.init(energy, x0)
    eager = burn_in if burn_in and sampler._compiled_adapts() else 0
    tallies = Tallies(None, None)
    for i in range(eager):  # adaptation runs step by step on the torch backend
        state, info = sampler.step(energy, state, generator)
        state = sampler.adapt(state, info, i, burn_in)
        tallies.warmup(info)
    draws = Draws(state.x, generator)
    searched = getattr(state, "search_grads", 0)
    plan = sampler._compiled_plan(energy, state, draws)
    return state, plan, draws, eager, tallies, getattr(state, "search_grads", 0) - searched


def state_carry(state: Any, extra: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """A sampler state as a block's carry: ``(x, energy, grad, *extra)``."""
    return (state.x, state.energy, state.grad, *(getattr(state, n) for n in extra))


def store_carry(state: Any, carry: Sequence[torch.Tensor], extra: tuple[str, ...],
                n_run: int) -> None:
    """Write a final carry (:func:`state_carry`'s layout) back into ``state``, and advance
    its step counter ``t`` (where it keeps one) by the ``n_run`` compiled steps."""
    state.x, state.energy, state.grad = carry[:3]
    for name, value in zip(extra, carry[3:], strict=True):
        setattr(state, name, value)
    if hasattr(state, "t"):
        state.t += n_run


def run_compiled(sampler: Any, energy: Energy, x0: torch.Tensor, run: RunSpec,
                 generator: torch.Generator) -> RawRun:
    """Run ``run.burn_in + run.n_steps`` steps of ``sampler`` in compiled blocks.

    ``sampler`` is a :class:`CompiledSampler`. On a CPU the chains run in chunks of at most
    ``compile_chunk`` (cache-sized: 2,048 chains of the benchmark's MLP ran 1.2x faster per
    chain than 10,000 at once); every chunk shares one graph and each block's draws, so
    chunking changes no random number. The kept steps go through the core's
    :class:`~ebmcore.sampling.Recorder` (trajectory, ``on_keep`` after each block, the
    energy at every kept step).

    Raises:
        BackendUnavailableError: When compiling fails (graph break, no compiler); the
            message says why.
    """
    reason = compiler_reason(x0)
    if reason is not None:
        raise BackendUnavailableError(reason)
    burn_in, n_steps = run.burn_in, run.n_steps
    state, plan, draws, eager, tallies, plan_grads = _compiled_setup(
        sampler, energy, x0, burn_in, generator)
    carry = plan.carry if plan.carry is not None else state_carry(state, plan.extra)
    # Rows of the carry: ``reps`` per chain (composite samplers), chain-major.
    x, reps = carry[0], plan.replicas
    rows, total = x.shape[0], run.n_total
    b = rows // reps
    n_block = max(1, int(sampler.compile_block) // plan.grads_per_step)
    record = (1 if run.on_keep is not None else run.trace_stride) if (
        run.return_trajectory or run.on_keep is not None) else 0
    limit = sampler.compile_chunk
    if limit == "auto":
        limit = CPU_CHUNK if x.device.type == "cpu" else None
    # Chunks hold whole chains; the limit counts rows (what the cache holds).
    size = reps * chunk_size(b, None if limit is None else max(1, limit // reps), record)
    mode = sampler.compile_mode or ("reduce-overhead" if x.device.type == "cuda"
                                    else "default")
    mode_arg = None if mode == "default" else mode
    like = x[:size]
    block = _Block(lambda variant, fresh: _compiled_block(
        plan, energy, like, n_block, record * reps, mode_arg, variant, fresh=fresh),
        own_grad=closed_form(energy), passes=mode_arg is None and x.device.type == "cpu")

    chunks = [slice(i, i + size) for i in range(0, rows, size)]
    # One carry per chunk (copies, so that each is a tensor of its own), and three
    # distinct accumulators: inputs that alias each other would change dynamo's guards.
    carries = [tuple(t[c].clone() for t in carry) for c in chunks]
    sums = [tuple(torch.zeros(size, dtype=x.dtype, device=x.device) for _ in range(3))
            for _ in chunks]
    recorder = Recorder(run, x[::reps])
    j = eager
    while j < total:
        n_active = min(n_block, total - j)
        active, counted = block.mask(n_block, n_active, max(0, burn_in - j), x)
        inputs = plan.inputs(j, n_block, draws)
        means, recorded = [], []
        for i, c in enumerate(chunks):
            part = inputs if len(chunks) == 1 else tuple(
                v[:, c].contiguous() if v.ndim > 1 and v.shape[1] == rows else v
                for v in inputs)
            carries[i], sums[i], m, xs = block(energy, carries[i], sums[i], part,
                                               plan.consts, active, counted)
            means.append(m)
            recorded.append(xs)
        # chunks are equal, so the batch's mean is the mean of theirs
        mean = means[0] if len(chunks) == 1 else torch.stack(means).mean(0)
        for k in range(n_active):
            i = j + k - burn_in  # kept-phase step index
            if i < 0 or not recorder.keeps(i):
                continue
            xk = None
            if record:
                xk = recorded[0][k] if len(chunks) == 1 else torch.cat([r[k] for r in recorded])
            if run.on_keep is not None:
                recorder.keep(i, xk, energy_mean=mean[k])
            else:
                recorder.keep(i, traced=xk, energy_mean=mean[k])
        j += n_active

    joined = [torch.cat(parts) for parts in zip(*carries, strict=True)]
    accept, divergent, poison = (torch.cat(parts)[::reps] for parts in zip(*sums, strict=True))
    if plan.finish is not None:
        plan.finish(tuple(joined), total - eager)
    else:
        store_carry(state, joined, plan.extra, total - eager)
    nonfinite = nonfinite_rows(state.x) | torch.isnan(poison + 0.0 * state.energy)
    extra: dict[str, Any] = {"compile_seconds": block.seconds, "compiled_block": n_block,
                             "compiled_chunk": size // reps, "compile_mode": mode}
    if eager:
        extra["compiled_from_step"] = eager
    trace, trace_steps = recorder.trace()
    warm, kept = _grad_counts(plan, tallies, b, burn_in, eager, n_steps, plan_grads,
                              x.device)
    return RawRun(samples=state.x.clone(), state=state, trajectory=recorder.trajectory,
                  energy_trace=trace, energy_trace_steps=trace_steps, nonfinite=nonfinite,
                  acceptance=accept / n_steps if plan.acceptance else None,
                  divergences=divergent.round().long() if plan.divergence else None,
                  n_grad_warmup=warm, n_grad_sampling=kept, extra=extra)


def _grad_counts(plan: CompiledPlan, eager: Tallies, b: int, burn_in: int, n_eager: int,
                 n_steps: int, plan_grads: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chain gradient evaluations ``(warm-up, sampling)``: the eager steps' own counts,
    then ``grads_per_step`` (times the rows per chain) per compiled step. A step-size search
    run while building the plan counts where the torch backend's first step would put it."""
    per_step = plan.grads_per_step * plan.replicas
    warm = torch.full((b,), per_step * (burn_in - n_eager), dtype=torch.long, device=device)
    if eager.n_grad_warmup is not None:
        warm += eager.n_grad_warmup.to(device)
    elif n_eager:
        warm += per_step * n_eager
    kept = torch.full((b,), per_step * n_steps, dtype=torch.long, device=device)
    (warm if burn_in > 0 else kept).add_(plan_grads)
    return warm, kept
