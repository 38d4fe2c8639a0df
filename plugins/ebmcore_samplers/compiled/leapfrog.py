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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ebmcore.energy import Energy

from .backend import CompiledPlan, _Block, _compiled_block, closed_form, compiler_reason
from .steps import Carry, _rows


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
    x = x + (eps * (p * inv if kind == "diag" else p @ inv)).view_as(x)
    e, g = eg(x)
    p = p - 0.5 * eps * _rows(g)
    return (x, e, g, p), None, None


def _no_inputs(t0: int, k: int, draws: Any) -> tuple[torch.Tensor, ...]:
    raise NotImplementedError("the leapfrog block's inputs are built by CompiledLeapfrog")


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
        reason = compiler_reason(like)
        if reason is not None:
            from ebmcore.errors import BackendUnavailableError

            raise BackendUnavailableError(reason)
        self.kind, self.block = kind, int(block)
        plan = CompiledPlan(leapfrog_step, static=(kind,), consts=(None,), inputs=_no_inputs)
        b = like.shape[0]
        cpu = like.device.type == "cpu"
        self._call = _Block(lambda variant, fresh: _compiled_block(
            plan, energy, like, self.block, 0, None, variant, fresh=fresh),
            own_grad=closed_form(energy), passes=cpu)
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
