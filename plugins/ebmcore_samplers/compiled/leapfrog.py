"""Leapfrog steps in compiled blocks, for samplers whose trajectory length changes per iteration.

ChEES-HMC (:mod:`ebmcore_samplers.chees`) runs ``n`` leapfrog steps per iteration, with ``n``
jittered every iteration, so its whole step cannot be one fixed graph. What can is a block
of ``K`` leapfrog steps, each of which runs or is masked (``step k < m``): one graph serves
every ``n`` as ``ceil(n / K)`` calls, the last with ``m = n mod K`` (or ``K``) steps active.
A masked step still evaluates its gradient (a graph has no branch): a trajectory of ``n``
steps costs ``K ceil(n / K)`` evaluations, which :meth:`CompiledLeapfrog.__call__` returns.

On a small model the eager leapfrog step is dominated by fixed costs: about 25 torch
operations and an autograd pass, 0.4-1.4 ms for eight schools' 10 dimensions on this
project's shared CPU, against 0.03-0.14 ms per step compiled (``K = 8`` and ``K = 1``;
``benchmarks/posteriors.py``). The blocks reuse the compiled backend's machinery
(:func:`~.backend._compiled_block`, :class:`~.backend._Block`): its cache keyed by structure,
energy type, chains' shape, dtype and device; the energy's own ``energy_and_grad`` where it
has one, else ``torch.func.grad`` of its forward; its CPU graph passes; its fallbacks and
errors. The metric is always diagonal or dense inside the graph (an identity mass passes
ones), so the mass adaptation's first estimate does not compile a second graph.

NUTS (:mod:`ebmcore_samplers.nuts`) grows each chain's tree leaf by leaf, one leapfrog step
per leaf, with its kicks, drifts and tree bookkeeping in numba kernels; what costs there is
the energy-and-gradient call, so :class:`CompiledGradient` compiles just that, as a block of
one :func:`gradient_step`, on fixed batches: the chains still growing are copied into the
first rows of the smallest compiled batch that holds them (``B``, ``B / 4``, ...), and the
other rows (stale, finite positions) are evaluated and discarded. A few graphs serve every
leaf, whatever the number of chains left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError

from .backend import CompiledPlan, _Block, _compiled_block, closed_form, compiler_reason
from .steps import Carry, _rows, velocity
from .traced import TracedGradient


def leapfrog_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
                  inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
                  ) -> tuple[Carry, None, None]:
    """One leapfrog step (kick, drift, kick) on ``carry = (x, energy, grad, p)``.

    ``static = (kind,)`` with ``kind`` ``"diag"`` or ``"dense"``, ``consts = (M⁻¹,)`` (a
    vector or a matrix), ``inputs = (eps,)`` (0-d). The first half kick uses the carried
    gradient, so a step costs one evaluation.
    """
    (kind,) = static
    (inv,) = consts
    x, _, g, p = carry
    (eps,) = inputs
    p = p - 0.5 * eps * _rows(g)
    x = x + (eps * velocity(kind, p, inv)).view_as(x)
    e, g = eg(x)
    p = p - 0.5 * eps * _rows(g)
    return (x, e, g, p), None, None


def gradient_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
                  inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
                  ) -> tuple[Carry, None, None]:
    """The energy and gradient at ``carry = (x, energy, grad)``'s ``x``: ``(x, E(x), ∇E(x))``.

    No ``static``, ``inputs`` or ``consts``: NUTS's leapfrog moves are made outside the graph.
    """
    x = carry[0]
    e, g = eg(x)
    return (x, e, g), None, None


def _no_inputs(t0: int, k: int, draws: Any) -> tuple[torch.Tensor, ...]:
    raise NotImplementedError("the leapfrog block's inputs are built by its caller")


def _block_caller(step: Any, static: tuple[Any, ...], energy: Energy, like: torch.Tensor,
                  block: int) -> _Block:
    """The backend's caller of a compiled block of ``block`` ``step``s over chains ``like``.

    Raises:
        ebmcore.errors.BackendUnavailableError: When ``torch.compile`` cannot run here.
    """
    reason = compiler_reason(like)
    if reason is not None:
        from ebmcore.errors import BackendUnavailableError

        raise BackendUnavailableError(reason)
    plan = CompiledPlan(step, static=static, consts=(None,), inputs=_no_inputs)
    return _Block(lambda variant, fresh: _compiled_block(
        plan, energy, like, block, 0, None, variant, fresh=fresh),
        own_grad=closed_form(energy), passes=like.device.type == "cpu")


class CompiledLeapfrog:
    """Blocks of ``block`` leapfrog steps compiled for one energy and one batch of chains.

    Args:
        energy: The energy (its type is part of the cache key; another instance of the
            same type reuses the graph).
        like: A tensor shaped like the chains ``(B, *event)``.
        kind: ``"diag"`` or ``"dense"``: the metric's form inside the graph.
        block: Leapfrog steps per compiled call (``K``).

    Raises:
        ebmcore.errors.BackendUnavailableError: When ``torch.compile`` cannot run here (at
            construction) or cannot compile the energy (at the first call).
    """

    def __init__(self, energy: Energy, like: torch.Tensor, kind: str, block: int) -> None:
        if kind not in ("diag", "dense"):
            raise ValueError(f"kind must be 'diag' or 'dense', got {kind!r}")
        self.kind, self.block = kind, int(block)
        self._call = _block_caller(leapfrog_step, (kind,), energy, like, self.block)
        b = like.shape[0]
        self._sums = tuple(torch.zeros(b, dtype=like.dtype, device=like.device)
                           for _ in range(3))
        self._eps = torch.empty(self.block, dtype=like.dtype, device=like.device)
        self._ones: torch.Tensor | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledLeapfrog:
        """Itself: it holds compiled code and scratch buffers, no chain's state."""
        return self

    @property
    def compile_seconds(self) -> float:
        """Seconds spent in calls that compiled."""
        return self._call.seconds

    def inverse_mass(self, inv: torch.Tensor | None, dim: int, like: torch.Tensor
                     ) -> torch.Tensor:
        """The graph's ``M⁻¹``: ``inv``, or ones ``(dim,)`` for the identity."""
        if inv is not None:
            return inv
        if self._ones is None:
            self._ones = torch.ones(dim, dtype=like.dtype, device=like.device)
        return self._ones

    def __call__(self, energy: Energy, x: torch.Tensor, p: torch.Tensor, energy0: torch.Tensor,
                 grad: torch.Tensor, step_size: float, n_steps: int, inv: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Run ``n_steps`` leapfrog steps from ``(x, p)`` with gradient ``grad`` there.

        Returns ``(x, p, energy, grad, evaluations)`` at the end point: new tensors (the
        inputs are not modified); ``evaluations = block * ceil(n_steps / block)``.
        """
        self._eps.fill_(step_size)
        carry: Carry = (x, energy0, grad, p)
        done = calls = 0
        while done < n_steps:
            m = min(self.block, n_steps - done)
            active, counted = self._call.mask(self.block, m, 0, x)
            carry, _, _, _ = self._call(energy, carry, self._sums, (self._eps,), (inv,),
                                        active, counted)
            done += m
            calls += 1
        x1, e1, g1, p1 = carry
        return x1, p1, e1, g1, calls * self.block


#: :class:`CompiledGradient`'s batch sizes: ``B``, ``B / 4``, ``B / 16``, ... down to 16 rows.
BUCKET_FACTOR = 4
MIN_BUCKET = 16


class _Batch:
    """One compiled energy-and-gradient call over a fixed batch of ``size`` rows.

    The call is first traced into a guard-free graph (:class:`~.traced.TracedGradient`);
    an energy that does not trace runs through ``torch.compile``'s block instead.
    """

    def __init__(self, energy: Energy, like: torch.Tensor, traced: bool = True) -> None:
        b = like.shape[0]
        self.buffer = like.detach().clone()
        self.rows = self.buffer.view(b, -1)
        self.energy = energy
        self.traced: TracedGradient | None = None
        self.trace_failure: str | None = None
        self.seconds = 0.0
        try:
            if traced:
                self.traced = TracedGradient(energy, self.rows, tuple(like.shape[1:]))
                self.seconds = self.traced.compile_seconds
        except BackendUnavailableError as exc:
            self.trace_failure = str(exc)
        if self.traced is not None:
            return
        self.call = _block_caller(gradient_step, (), energy, like, 1)
        self.sums = tuple(torch.zeros(b, dtype=like.dtype, device=like.device)
                          for _ in range(3))
        self.e = torch.zeros(b, dtype=like.dtype, device=like.device)
        self.fast: Callable[..., Any] | None = None  # the graph, once it ran for ``energy``

    @property
    def compile_seconds(self) -> float:
        """Seconds spent tracing and compiling this batch's graph."""
        return self.seconds if self.traced is not None else self.call.seconds

    def __call__(self, energy: Energy, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, b = z.shape[0], self.rows.shape[0]
        self.rows[:n].copy_(z)
        if self.traced is not None and energy is self.energy:
            e, g = self.traced(self.rows)
            return e[:n], g[:n]
        if self.traced is not None:  # another energy than the traced one: trace it too
            self.__init__(energy, self.buffer, True)  # type: ignore[misc]
            return self(energy, z)
        active, counted = self.call.mask(1, 1, 0, z)
        args = ((self.buffer, self.e, self.buffer), self.sums, (), (None,), active, counted)
        if self.fast is None or energy is not self.energy:
            carry, _, _, _ = self.call(energy, *args)
            if energy is self.energy:
                self.fast = self.call.entry.fn
        else:
            # The graph ran for this energy and these buffers: call it directly. Its guards
            # still run (skipping them, torch's skip_guard_eval_unsafe, would halve the
            # call's fixed cost but could silently reuse a stale graph).
            with torch.no_grad():
                carry, _, _, _ = self.fast(energy, *args)
        return carry[1][:n], carry[2].reshape(b, -1)[:n]


class CompiledGradient:
    """The energy and gradient of up to ``B`` flat points, compiled for batches of ``B``.

    A call with ``n`` points runs the smallest compiled batch that holds them: ``B``,
    ``B / 4``, ``B / 16``, ... (rounded up, none under ``MIN_BUCKET`` rows), each compiled
    at its first use. The points fill the batch's first rows; the other rows are evaluated
    at what they last held (finite points) and discarded. On a model whose evaluation
    costs more with the rows (the 103-D volatility model: 1.3 ms for 64 chains, 5 ms for
    256, compiled, loaded CPU), a NUTS doubling with few chains still growing pays for a
    small batch only.

    Each batch's call is traced into one guard-free graph (:mod:`.traced`: about 10 µs a
    call on a small posterior, against some 0.2 ms through ``torch.compile``'s guards);
    an energy that does not trace is compiled by ``torch.compile`` as a block.

    Args:
        energy: The energy (its type is part of the cache key, as for
            :class:`CompiledLeapfrog`).
        like: The chains ``(B, *event)``: the batch's shape, and the buffers' first contents.
        traced: Trace the call (``False``: ``torch.compile``'s block only, for comparison).

    Raises:
        ebmcore.errors.BackendUnavailableError: When ``torch.compile`` cannot run here (at
            construction) or cannot compile the energy (at the first call of a batch size).
    """

    def __init__(self, energy: Energy, like: torch.Tensor, traced: bool = True) -> None:
        b = like.shape[0]
        self.traced = traced
        sizes = [b]
        while -(-sizes[-1] // BUCKET_FACTOR) >= MIN_BUCKET:
            sizes.append(-(-sizes[-1] // BUCKET_FACTOR))
        self.sizes = tuple(reversed(sizes))  # increasing
        self._like = like.detach()
        self._batches: dict[int, _Batch] = {b: _Batch(energy, self._like, traced)}

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledGradient:
        """Itself: it holds compiled code and scratch buffers, no chain's state."""
        return self

    @property
    def compile_seconds(self) -> float:
        """Seconds spent in calls that compiled."""
        return sum(batch.compile_seconds for batch in self._batches.values())

    def __call__(self, energy: Energy, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(n,)`` and flat gradients ``(n, D)`` at flat points ``z`` ``(n, D)``,
        ``n <= B``."""
        n = z.shape[0]
        if n > self.sizes[-1]:
            raise ValueError(f"z holds {n} points, more than the {self.sizes[-1]} compiled for")
        size = next(s for s in self.sizes if s >= n)
        batch = self._batches.get(size)
        if batch is None:
            batch = self._batches[size] = _Batch(energy, self._like[:size], self.traced)
        return batch(energy, z)
