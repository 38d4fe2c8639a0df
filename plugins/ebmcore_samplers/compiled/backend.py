"""The compiled backend's machinery: plans, draws, reasons, the auto rule and the cache of blocks.

The loop over the blocks and the backend object live in :mod:`.loop`. See the package's
docstring (:mod:`ebmcore_samplers.compiled`) for what it does and why.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError

from .passes import inductor_options
from .steps import Carry, StepFn

#: Gradient evaluations per compiled block (steps per block for one-gradient samplers).
BLOCK_GRADS = 10
#: On a CPU, the most chains per compiled call: larger batches run in equal chunks that
#: stay in the cache (see :func:`run_compiled`).
CPU_CHUNK = 2048
#: Auto rule, CPU: least chain-steps (chains x steps of one run) for which compiling repays
#: its cost; see :func:`auto_picks_compiled` for the measurements behind it.
AUTO_CPU_CHAIN_STEPS = 100_000_000
#: Auto rule, CUDA: least steps of one run for which compiling repays its cost.
AUTO_CUDA_STEPS = 50_000


# -- what a sampler contributes -----------------------------------------------------------------

@dataclass
class CompiledPlan:
    """How one sampler runs compiled: its step, its structure and its per-block inputs.

    Attributes:
        step: The pure step function (one of :mod:`ebmcore_samplers.compiled.steps`).
        static: Hashable structure baked into the graph (part of the cache key).
        consts: Tensors fixed for the run (``None`` where absent).
        inputs: ``inputs(t0, k, draws) -> tensors with leading dimension k``: the per-step
            values of steps ``t0 .. t0 + k - 1`` (schedules, noise), drawn eagerly; each is
            ``(k,)`` (one value per step) or ``(k, B, ...)`` (per chain, split with the
            chains when they run in chunks).
        extra: State attributes carried besides ``x``, ``energy`` and ``grad``.
        grads_per_step: Gradient evaluations per step (sizes the block).
        acceptance: Whether the step reports an acceptance probability.
        divergence: Whether the step reports divergences.
        replicas: Rows per chain, for composite samplers (parallel tempering): the carry
            holds ``replicas`` rows per chain, chain-major (row ``b * replicas + r``), and
            row ``b * replicas`` is chain ``b``'s kept replica. The loop records, traces and
            reports that row only, and chunks hold whole chains.
        counted: Whether the step takes one more input, last: its step's kept-phase weight
            (1.0 after burn-in, else 0.0), for tallies it keeps in its own carry.
        carry: The initial carry, where it is not ``(x, energy, grad, *extra)`` of the state.
        finish: ``finish(carry, n_run)`` writes the final carry back into the state after
            ``n_run`` compiled steps, where the plan gave its own ``carry`` (the state's
            ``x``, ``energy`` and ``grad`` must then be the kept replicas').
    """

    step: StepFn
    static: tuple[Any, ...]
    consts: tuple[Any, ...]
    inputs: Callable[[int, int, Draws], tuple[torch.Tensor, ...]]
    extra: tuple[str, ...] = ()
    grads_per_step: int = 1
    acceptance: bool = False
    divergence: bool = False
    replicas: int = 1
    counted: bool = False
    carry: tuple[torch.Tensor, ...] | None = None
    finish: Callable[[tuple[torch.Tensor, ...], int], None] | None = None


class Draws:
    """Eager per-block draws from the user's generator into buffers reused across blocks.

    Args:
        like: A tensor of the chains' dtype and device.
        generator: The run's generator.
    """

    def __init__(self, like: torch.Tensor, generator: torch.Generator) -> None:
        self.dtype, self.device, self.generator = like.dtype, like.device, generator
        self._buffers: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}

    def _buffer(self, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        buf = self._buffers.get((kind, shape))
        if buf is None:
            buf = torch.empty(shape, dtype=self.dtype, device=self.device)
            self._buffers[(kind, shape)] = buf
        return buf

    def normal(self, *shape: int, tag: str = "normal") -> torch.Tensor:
        """Standard normal draws of ``shape`` (into the buffer ``tag``: one per use)."""
        return torch.randn(shape, generator=self.generator, out=self._buffer(tag, shape))

    def uniform(self, *shape: int, tag: str = "uniform") -> torch.Tensor:
        """Uniform draws on ``[0, 1)`` of ``shape`` (into the buffer ``tag``: one per use)."""
        return torch.rand(shape, generator=self.generator, out=self._buffer(tag, shape))

    def values(self, schedule: Callable[[int], float], t0: int, k: int) -> torch.Tensor:
        """The per-step values ``schedule(t0), ..., schedule(t0 + k - 1)`` as a tensor."""
        from ebmcore_samplers.schedules import Constant

        if isinstance(schedule, Constant):
            return torch.full((k,), schedule.v, dtype=self.dtype, device=self.device)
        return torch.tensor([float(schedule(t)) for t in range(t0, t0 + k)],
                            dtype=self.dtype, device=self.device)


# -- can it run, and does auto pick it ----------------------------------------------------------

def compiled_reason(x: torch.Tensor) -> str | None:
    """Return why the compiled backend cannot serve chains like ``x``, or ``None``.

    Cheap checks only, without importing torch's compiler (about a second, which a process
    that never compiles should not pay): :func:`compiler_reason` runs the rest when a run
    starts, and a compiler that fails on the energy itself (a graph break, no C++
    compiler) is found at the first block. Either way the run raises
    :class:`~ebmcore.errors.BackendUnavailableError` with the reason, which ``"auto"``
    turns into a fallback to torch.
    """
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (it needs torch>=2.0)"
    dynamo = sys.modules.get("torch._dynamo")
    disabled = (bool(dynamo.config.disable) if dynamo is not None
                else os.environ.get("TORCHDYNAMO_DISABLE", "0") == "1")
    if disabled:
        return "torch.compile is switched off here (TORCHDYNAMO_DISABLE is set)"
    if x.device.type not in ("cpu", "cuda"):
        return f"x0 is on {x.device}; the compiled backend runs CPU and CUDA tensors"
    return None


def compiler_reason(x: torch.Tensor) -> str | None:
    """:func:`compiled_reason`, then whether dynamo supports this platform and, for CUDA
    tensors, whether triton is installed (imports torch's compiler)."""
    reason = compiled_reason(x)
    if reason is not None:
        return reason
    try:
        import torch._dynamo as dynamo
    except Exception as exc:  # noqa: BLE001 - any import failure means no compiler
        return f"torch's compiler (dynamo) cannot be imported: {type(exc).__name__}: {exc}"
    if not dynamo.is_dynamo_supported():
        return (f"torch.compile does not support this platform (torch {torch.__version__}, "
                f"Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform})")
    if x.device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "torch.compile needs triton to compile for CUDA, and it is not installed"
    return None


def closed_form(energy: Energy) -> bool:
    """Whether the energy computes ``energy_and_grad`` itself (not by autograd)."""
    return type(energy).energy_and_grad is not Energy.energy_and_grad


def auto_picks_compiled(energy: Energy, x: torch.Tensor, n_total: int | None,
                        rows_per_chain: int = 1) -> bool:
    """Whether ``backend="auto"`` picks ``"compiled"`` (when it can run and nothing fused does).

    The rule: a neural (autograd-gradient) energy and a run long enough to repay compiling
    a block, which costs 10-20 s (more for larger networks) once per process and
    configuration:

    - CPU: ``rows x steps >= AUTO_CPU_CHAIN_STEPS``, with ``rows = chains x rows_per_chain``
      (parallel tempering steps every replica of every chain). On a 2-core CPU (one torch thread)
      the 2 -> 128 -> 128 -> 1 MLP's Langevin and MALA steps save 0.37-0.46 µs per
      chain-step compiled, against 10-20 s of compiling a block into an empty inductor
      cache: about 5e7 chain-steps to break even (``benchmarks/compiled.py``); the
      threshold is twice that, for larger networks' longer compiles.
    - CUDA: ``steps >= AUTO_CUDA_STEPS``. There the eager step is launch-bound (about
      550 µs per MLP step whatever the chain count, against 38 µs compiled with CUDA
      graphs, measured on an H200 with torch 2.11), so the saving is per step: 0.5 ms,
      against a compile assumed to take about 25 s (not measured here: no GPU).

    Closed-form energies stay with the fused kernels and the torch floor that the existing
    rule picks between. The rule depends only on the energy, the chains and the run's
    length, never on whether a block is compiled yet, so the same call always picks the
    same backend and the same seed gives the same bits. A run whose length the sampler does
    not know (``n_total`` ``None``) is not picked.

    Args:
        energy: The target energy.
        x: The initial positions.
        n_total: ``burn_in + n_steps`` of the run, or ``None``.
        rows_per_chain: Rows the sampler steps per chain (its replicas; 1 for most).
    """
    if n_total is None or closed_form(energy):
        return False
    if x.device.type == "cuda":
        return n_total >= AUTO_CUDA_STEPS
    return x.shape[0] * rows_per_chain * n_total >= AUTO_CPU_CHAIN_STEPS


# -- compiled blocks and their cache -----------------------------------------------------------

def _energy_and_grad(energy: Energy, x: torch.Tensor,
                     own: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if own:
        return energy.energy_and_grad(x)

    def total(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = energy(z)
        return e.sum(), e

    g, e = torch.func.grad(total, has_aux=True)(x)
    return e, g


def _make_block(step: StepFn, static: tuple[Any, ...], own_grad: bool, n_block: int,
                record: int, replicas: int = 1, counts: bool = False) -> Callable[..., Any]:
    """The block of ``n_block`` steps that ``torch.compile`` traces (pure: no in-place ops).

    ``record`` is a stride over the carry's rows; the energy means are over rows
    ``0, replicas, 2 * replicas, ...`` (the kept replicas); with ``counts`` the step gets
    its kept-phase weight as a last input (see :class:`CompiledPlan`).
    """

    def block(energy: Energy, carry: Carry, sums: Carry, inputs: tuple[torch.Tensor, ...],
              consts: tuple[Any, ...], active: torch.Tensor, counted: torch.Tensor
              ) -> tuple[Carry, Carry, torch.Tensor, torch.Tensor | None]:
        def eg(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return _energy_and_grad(energy, z, own_grad)

        accept, divergent, poison = sums
        means, kept = [], []
        for k in range(n_block):
            step_inputs = tuple(v[k] for v in inputs) + ((counted[k],) if counts else ())
            new, a, d = step(static, eg, carry, step_inputs, consts)
            # A masked (spare) step leaves the chains where they were.
            carry = tuple(torch.where(active[k], n, o) for n, o in zip(new, carry, strict=True))
            if a is not None:
                accept = accept + counted[k] * a
            if d is not None:
                divergent = divergent + counted[k] * d
            e = carry[1]
            poison = poison + 0.0 * e  # turns NaN for good once a chain's energy is not finite
            means.append((e if replicas == 1 else e[::replicas]).mean())
            if record:
                kept.append(carry[0][::record])
        return (carry, (accept, divergent, poison), torch.stack(means),
                torch.stack(kept) if record else None)

    return block



def _own_code(fn: Callable[..., Any], tag: int) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object: dynamo caches compiled code (and counts
    recompiles against its limit of 8) per code object, so each key gets a cache of its own."""
    code = fn.__code__.replace(co_name=f"compiled_block_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__,
                              fn.__closure__)


@dataclass
class _Compiled:
    """A cached compiled block: ``ok`` once a call succeeded, ``failure`` once one failed."""

    fn: Callable[..., Any]
    cudagraphs: bool
    ok: bool = False
    failure: str | None = None
    traced: bool = False  # whether the failure came after dynamo traced (in inductor)


_BLOCKS: dict[tuple[Any, ...], _Compiled] = {}
_LOCK = threading.Lock()


def _compiled_block(plan: CompiledPlan, energy: Energy, x: torch.Tensor, n_block: int,
                    record: int, mode: str | None, variant: tuple[bool, bool], *,
                    fresh: bool = False) -> _Compiled:
    """The cached block for this key (``fresh``: replace it with a new one).

    ``variant`` is ``(own_grad, passes)``: the energy's own ``energy_and_grad`` (else
    ``torch.func.grad``), and this module's CPU graph passes (:func:`_cpu_passes`).
    """
    own_grad, passes = variant
    key = (plan.step, plan.static, variant, type(energy), tuple(x.shape), x.dtype,
           str(x.device), n_block, record, mode, plan.replicas, plan.counted)
    with _LOCK:
        entry = None if fresh else _BLOCKS.get(key)
        if entry is None:
            fn = _own_code(_make_block(plan.step, plan.static, own_grad, n_block, record,
                                       plan.replicas, plan.counted), len(_BLOCKS))
            try:
                # torch.compile takes a mode or options, not both: the passes go with the
                # default mode only.
                extra = ({"options": inductor_options(x.device.type) if passes else {}}
                         if mode is None else {"mode": mode})
                compiled = torch.compile(fn, fullgraph=True, dynamic=False, **extra)
            except Exception as exc:  # noqa: BLE001 - a compiler that cannot even start
                raise BackendUnavailableError(
                    f"torch.compile is not usable here ({type(exc).__name__}: {exc}); "
                    f"backend='torch' runs every energy") from exc
            entry = _BLOCKS[key] = _Compiled(compiled, cudagraphs=mode == "reduce-overhead")
    return entry


def _graphs_compiled() -> int:
    """dynamo's count of graphs compiled in this process (to tell a compiling call)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - a torch without the counters
        return 0
    return int(counters["stats"]["unique_graphs"])


def _inductor_failed(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the compiler backend (inductor), after dynamo traced."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"BackendCompilerFailed", "InductorError"})


def _recompile_limit_hit(exc: BaseException) -> bool:
    import torch._dynamo.exc as dynamo_exc

    limit = getattr(dynamo_exc, "FailOnRecompileLimitHit", None)
    return limit is not None and isinstance(exc, limit)


def compiled_blocks() -> int:
    """Number of compiled blocks cached in this process (each one key)."""
    return len(_BLOCKS)


def clear_compiled_blocks() -> None:
    """Forget every cached block (the next run compiles again; for tests and benchmarks)."""
    with _LOCK:
        _BLOCKS.clear()


# -- the loop -------------------------------------------------------------------------------------

class _Block:
    """Calls one run's compiled block: masks, compile time, and fallbacks.

    An energy with its own ``energy_and_grad`` is first compiled with it; when that does not
    trace (a composite that calls ``torch.autograd.grad`` on a neural part, say), the block
    is compiled again with ``torch.func.grad`` of the energy's forward. When inductor
    itself fails with this module's CPU passes, the block is compiled again without them.

    Args:
        build: ``build(variant, fresh) -> _Compiled``, the cached block of a variant
            ``(own_grad, passes)``.
        own_grad: Whether to try the energy's own ``energy_and_grad`` first.
        passes: Whether to try the CPU graph passes first.
    """

    def __init__(self, build: Callable[[tuple[bool, bool], bool], _Compiled], own_grad: bool,
                 passes: bool) -> None:
        self.build = build
        self.modes = [(own, p) for own in ([True, False] if own_grad else [False])
                      for p in ([True, False] if passes else [False])]
        self.entry = build(self.modes[0], False)
        self.reasons: list[str] = []
        self.seconds = 0.0
        self.masks: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def mask(self, n_block: int, n_active: int, first_counted: int, like: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(active, counted)`` per step of a block: which steps run, which are kept-phase."""
        key = (n_active, first_counted)
        if key not in self.masks:
            k = torch.arange(n_block, device=like.device)
            active = k < n_active
            self.masks[key] = (active, (active & (k >= first_counted)).to(like.dtype))
        return self.masks[key]

    def _next_mode(self, reason: str, traced: bool) -> None:
        self.reasons.append(reason)
        own, _ = self.modes.pop(0)
        if not traced:  # dynamo failed: the passes, which come after it, are not the cause
            self.modes = [m for m in self.modes if m[0] != own]
        if not self.modes:
            raise BackendUnavailableError("; ".join(dict.fromkeys(self.reasons)))
        self.entry = self.build(self.modes[0], False)

    def __call__(self, energy: Energy, *args: Any) -> Any:
        """Run the block (compiling it on its first call) with ``energy`` and ``args``."""
        retried = False
        while True:
            if self.entry.failure is not None:  # this key failed before: do not pay twice
                self._next_mode(self.entry.failure, self.entry.traced)
                continue
            before, started = _graphs_compiled(), time.perf_counter()
            try:
                if self.entry.cudagraphs:
                    # Outputs of the previous replay were copied below; free them for reuse.
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.no_grad():
                    out = self.entry.fn(energy, *args)
            except Exception as exc:  # noqa: BLE001 - turned into the backend's error
                if _recompile_limit_hit(exc) and not retried:
                    # Too many variants under one key (energies whose Python constants
                    # differ): start that key over with a fresh cache, once.
                    self.entry, retried = self.build(self.modes[0], True), True
                    continue
                self.entry.failure = _describe(exc, energy, own_grad=self.modes[0][0])
                self.entry.traced = _inductor_failed(exc)
                if self.entry.ok:  # it compiled before: this is not about tracing
                    raise BackendUnavailableError(self.entry.failure) from exc
                continue
            self.entry.ok = True
            if _graphs_compiled() != before:
                self.seconds += time.perf_counter() - started
            if self.entry.cudagraphs:  # replay outputs live in the graph's memory pool
                out = _tree_clone(out)
            return out


def _tree_clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_tree_clone(o) for o in obj)
    return obj


def _describe(exc: BaseException, energy: Energy, *, own_grad: bool) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    how = ("its own energy_and_grad" if own_grad
           else "torch.func.grad of its forward")
    return (f"torch.compile could not compile the sampler's steps over "
            f"{type(energy).__name__} with {how} ({type(exc).__name__}: {first[:300]}); "
            f"the energy must trace as one graph (no print, no Python branching on tensor "
            f"values); backend='torch' runs every energy")


def chunk_size(n_chains: int, limit: int | None, record: int = 0) -> int:
    """The chains each compiled call runs: all of them, or an equal split into chunks.

    ``n_chains`` is split into the fewest equal chunks of at most ``limit`` chains (each a
    multiple of the recording stride ``record``), looking no further than chunks of
    ``limit / 4``; when no such split exists, or ``limit`` is ``None``, nothing is split.

    Args:
        n_chains: The batch size ``B``.
        limit: The most chains per call, or ``None``.
        record: The recording stride (0: nothing recorded).
    """
    if limit is None or n_chains <= limit:
        return n_chains
    for n in range(-(-n_chains // limit), n_chains // max(1, limit // 4) + 1):
        size = n_chains // n
        if n_chains % n == 0 and size % max(1, record) == 0:
            return size
    return n_chains
