"""The lockstep No-U-Turn transition: every chain grows its own tree, all chains in one batch.

One transition of the multinomial NUTS of Betancourt (2017), as in Stan and BlackJAX:

- the trajectory doubles in a random direction per chain until it makes a U-turn, diverges or
  reaches the maximum depth; the new half of each doubling is built leaf by leaf;
- within a new half, each leaf becomes the half's proposal with probability proportional to
  its weight ``exp(-H)`` (uniform progressive sampling, i.e. exact multinomial sampling);
  a finished half replaces the tree's proposal with probability ``min(1, W_new / W_old)``
  (biased progressive sampling);
- U-turns inside a half are checked on every balanced sub-tree with the iterative
  checkpoint scheme of NumPyro / BlackJAX (Phan et al. 2019), the whole tree with the
  generalised criterion on the summed momentum ``rho``.

All chains that are still growing are at the same depth and the same leaf, so the leaf and
checkpoint indices are Python integers shared by every chain. At the start of each doubling
the still-growing chains are gathered into one compact batch (one host synchronisation per
doubling), so each leapfrog step is one energy-and-gradient call for the whole batch; a chain
that stops inside a half keeps moving to the half's end and is ignored. An energy whose value
depends on the row (a batch of tempered replicas) provides ``take_rows(index) -> Energy`` for
the compacted batch.

On the CPU (float32 and float64) :func:`transition` hands the per-leaf bookkeeping to the
numba kernels of :mod:`ebmcore_samplers._nuts_numba`, which build the same trees from the
same random numbers, compact the batch at every leaf (a chain whose tree stopped costs no
more gradients) and leave only the energy call to torch; the torch version here runs on
other devices and dtypes, and is the reference the numba one is tested against.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore_samplers.metric import Metric

_vecdot = torch.linalg.vecdot


def velocity(p: torch.Tensor, inv_mass: torch.Tensor | None) -> torch.Tensor:
    """``M^-1 p`` for flat momenta ``(B, D)``: identity, diagonal ``(D,)`` or dense ``(D, D)``."""
    if inv_mass is None:
        return p
    return p * inv_mass if inv_mass.ndim == 1 else p @ inv_mass


def checkpoint_range(leaf: int) -> tuple[int, int]:
    """Checkpoints ``[lo, hi]`` to test at odd leaf ``leaf`` (and ``hi`` stores at even ones).

    ``hi`` is the number of set bits of ``leaf >> 1``; the sub-trees that end at ``leaf`` are
    as many as its trailing one bits, and they start at checkpoints ``hi, hi - 1, ...``.
    """
    hi = bin(leaf >> 1).count("1")
    trailing = 0
    n = leaf
    while n & 1:
        n >>= 1
        trailing += 1
    return hi - trailing + 1, hi


# Work per leaf is kept to what the tree needs:
# - a chain that stops inside a half has that half discarded at the merge, so the half's
#   log weight, proposal and summed momentum need no masking by ``alive`` per leaf;
# - per-leaf diagnostics are deferred: ``-delta`` and ``alive`` go into one buffer row each,
#   reduced once per doubling (acceptance, gradient count, divergence);
# - the first leaf of a half needs no log-sum-exp: the half's log weight is its own;
# - events are flattened once per transition, so there is no per-leaf reshaping;
# - the batch stays compact (no copy back of the whole record per doubling): finished
#   chains leave their proposal in the full-size output, counters are updated with
#   ``index_add_``.


@functools.cache
def leaf_plan(depth: int) -> tuple[tuple[int, int, int], ...]:
    """Per leaf of a ``2**depth``-leaf half: ``(slot, lo, hi)``, the checkpoint slot it fills
    (``-1``: none) and the slots ``lo..hi`` whose balanced sub-trees end at it (none when
    ``lo > hi``; see ``checkpoint_range``)."""
    if depth == 0:
        return ((-1, 0, -1),)
    plan = []
    for leaf in range(2 ** depth):
        lo, hi = checkpoint_range(leaf)
        plan.append((hi, 0, -1) if leaf % 2 == 0 else (-1, lo, hi))
    return tuple(plan)


def flat_energy_and_grad(energy: Energy, event: torch.Size
                          ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``energy.energy_and_grad`` on flat points ``(n, D)``, returning a flat gradient."""
    if len(event) == 1:
        return energy.energy_and_grad

    def evaluate(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, g = energy.energy_and_grad(z.view(z.shape[0], *event))
        return e, g.reshape(z.shape[0], -1)

    return evaluate


def transition(energy: Energy, x: torch.Tensor, e: torch.Tensor, g: torch.Tensor,
               step_size: torch.Tensor, metric: Metric, max_depth: int,
               max_energy_error: float, generator: torch.Generator, *,
               bookkeeping: str = "auto", evaluate: Callable | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Run one NUTS transition for every chain.

    Args:
        energy: The target energy.
        x: Positions ``(B, *event)``; not modified.
        e: Energies ``(B,)`` at ``x``.
        g: Gradients at ``x``.
        step_size: Per-chain step sizes ``(B,)``.
        metric: The mass matrix (identity, diagonal or dense) over the flat event.
        max_depth: Maximum number of doublings.
        max_energy_error: Energy error ``H - H0`` beyond which a leaf counts as divergent.
        generator: Source of randomness.
        bookkeeping: ``"auto"`` (numba on the CPU for float32 and float64, else torch),
            ``"numba"`` or ``"torch"``.
        evaluate: ``evaluate(z) -> (energies, flat gradients)`` on flat points ``(n, D)``
            of any ``n <= B``, in place of ``energy``'s own (the compiled evaluation of
            :class:`~ebmcore_samplers.compiled.leapfrog.CompiledGradient`); not for an
            energy whose value depends on the row (``take_rows``).

    Returns:
        New positions, energies and gradients, and per-chain info: ``accept_prob`` (mean
        Metropolis acceptance over the tree's leaves, the statistic step-size adaptation
        uses), ``tree_depth``, ``n_grad`` (leapfrog steps, one gradient each) and
        ``divergent``.
    """
    from ebmcore_samplers import _nuts_numba

    if bookkeeping not in ("auto", "numba", "torch"):
        raise ValueError(f"bookkeeping must be 'auto', 'numba' or 'torch', got {bookkeeping!r}")
    b, shape = x.shape[0], x.shape
    xf, gf = x.reshape(b, -1), g.reshape(b, -1)
    if bookkeeping == "numba" or (bookkeeping == "auto" and _nuts_numba.supports(x)):
        rows = (_nuts_numba.rows_evaluator(energy, shape[1:]) if evaluate is None
                else lambda _rows: evaluate)
        out = _nuts_numba.transition(rows, xf, e, gf, step_size, metric, max_depth,
                                     max_energy_error, generator)
    else:
        p0 = metric.draw_(torch.empty_like(xf), generator)
        out = _torch_transition(energy, xf, e, gf, step_size, p0, metric.inverse_mass(),
                                shape, max_depth, max_energy_error, generator, evaluate)
    xn, en, gn, info = out
    return xn.view(shape), en, gn.view(shape), info


def _torch_transition(energy: Energy, xf: torch.Tensor, e: torch.Tensor, gf: torch.Tensor,
                      step_size: torch.Tensor, p0: torch.Tensor, im: torch.Tensor | None,
                      shape: torch.Size, max_depth: int, max_energy_error: float,
                      generator: torch.Generator, evaluate: Callable | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                 dict[str, torch.Tensor]]:
    """:func:`transition` with torch operations (any device); flat points in and out."""
    b, dev = xf.shape[0], xf.device
    h0 = _vecdot(velocity(p0, im), p0).mul_(0.5).add_(e)
    # Tree record of the chains in the batch: ends, summed momentum, log weight, proposal,
    # initial energy, step size. Tensors are only ever replaced, never written in place,
    # so entries may share storage.
    tree = [xf, p0, gf, xf, p0, gf, p0, torch.zeros_like(e), xf, e, gf, h0, step_size]
    acc_t = torch.zeros_like(e)
    nlf_t = torch.zeros(b, dtype=torch.long, device=dev)
    dep_t = torch.zeros(b, dtype=torch.long, device=dev)
    div_t = torch.zeros(b, dtype=torch.bool, device=dev)
    fixed = evaluate is not None  # a given evaluation serves every subset of the rows
    if evaluate is None:
        evaluate = flat_energy_and_grad(energy, shape[1:])
    neg_max = -max_energy_error
    idx: torch.Tensor | None = None  # full-batch rows of the batch once it is compacted
    out: list[torch.Tensor] = []  # full-size proposal (x, e, g) once it is compacted
    flushed = False  # whether ``out`` already holds the batch's final proposals
    for depth in range(max_depth):
        xl, pl, gl, xr, pr, gr, rho_t, logw_t, px, pe, pg, h0, eps = tree
        n = xl.shape[0]
        n_leaves = 1 << depth
        # One draw for all of this doubling's randomness: direction, each leaf, the merge.
        u = torch.rand((n_leaves + 2, n), generator=generator, dtype=xl.dtype, device=dev)
        u_rows = u.unbind(0)
        forward = u_rows[0] < 0.5
        fwd = forward.unsqueeze(1)
        step = torch.where(forward, eps, -eps).unsqueeze(1)
        half = 0.5 * step
        x = torch.where(fwd, xr, xl)
        p = torch.where(fwd, pr, pl)
        g = torch.where(fwd, gr, gl)
        # Row j of neg_delta: H0 - H at leaf j; row j of alive: the chain still grows at j.
        neg_delta = torch.empty((n_leaves, n), dtype=h0.dtype, device=dev)
        alive_buf = torch.empty((n_leaves + 1, n), dtype=torch.bool, device=dev)
        d_rows, a_rows = neg_delta.unbind(0), alive_buf.unbind(0)
        alive = a_rows[0].fill_(True)
        sx, se, sg = x, pe, g  # the new half's proposal; leaf 0 always replaces it
        ck_p: list[Any] = [None] * depth
        ck_v: list[Any] = [None] * depth
        ck_rho: list[Any] = [None] * depth
        logw = rho = neg_delta  # placeholders: leaf 0 sets both
        for leaf, (slot, lo, hi) in enumerate(leaf_plan(depth)):
            # Leapfrog; chains that stopped inside this half keep moving, ignored.
            p = torch.addcmul(p, half, g, value=-1.0)
            x = torch.addcmul(x, step, velocity(p, im))
            e, g = evaluate(x)
            p = torch.addcmul(p, half, g, value=-1.0)
            v = velocity(p, im)
            nd = torch.sub(h0, _vecdot(v, p).mul_(0.5).add_(e), out=d_rows[leaf])
            # An undefined energy (NaN) counts as an infinite energy error.
            nd.nan_to_num_(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
            if leaf == 0:
                # log(0 + exp(nd)) is nd, and u < exp(nd - nd) = 1 unless nd is infinite.
                logw, rho = nd, p
                take = torch.isfinite(nd)
            else:
                new_logw = torch.logaddexp(logw, nd)
                take = u_rows[leaf + 1] < (nd - new_logw).exp_()
                logw = new_logw
                rho = rho + p
            take_b = take.unsqueeze(1)
            sx = torch.where(take_b, x, sx)
            sg = torch.where(take_b, g, sg)
            se = torch.where(take, e, se)
            stop = nd < neg_max
            if slot >= 0:
                ck_p[slot], ck_v[slot], ck_rho[slot] = p, v, rho
            for i in range(lo, hi + 1):
                # Generalised U-turn on the balanced sub-tree from checkpoint i to here;
                # fmin(a, b) <= 0 is exactly (a <= 0) | (b <= 0), NaN included.
                span = (rho - ck_rho[i]).add_(ck_p[i])
                stop.logical_or_(torch.fmin(_vecdot(ck_v[i], span), _vecdot(v, span)) <= 0)
            alive = torch.gt(alive, stop, out=a_rows[leaf + 1])  # alive & ~stop

        # Deferred per-leaf diagnostics of the chains while they grew.
        grew = alive_buf[:n_leaves]
        accept = neg_delta.exp().clamp_(max=1.0).mul_(grew).sum(0)
        n_grad = grew.sum(0)
        diverged = (neg_delta < neg_max).logical_and_(grew).any(0)
        # A half that stopped early is discarded: no new end, no new proposal.
        valid = alive
        right = (valid & forward).unsqueeze(1)
        left = torch.gt(valid, forward).unsqueeze(1)  # valid & ~forward
        xr, pr, gr = torch.where(right, x, xr), torch.where(right, p, pr), torch.where(right, g, gr)
        xl, pl, gl = torch.where(left, x, xl), torch.where(left, p, pl), torch.where(left, g, gl)
        take = valid & (u_rows[n_leaves + 1] < (logw - logw_t).exp_())
        take_b = take.unsqueeze(1)
        px, pg = torch.where(take_b, sx, px), torch.where(take_b, sg, pg)
        pe = torch.where(take, se, pe)
        logw_t = torch.where(valid, torch.logaddexp(logw_t, logw), logw_t)
        rho_t = torch.where(valid.unsqueeze(1), rho_t + rho, rho_t)
        vl, vr = velocity(pl, im), velocity(pr, im)
        still = valid & (torch.minimum(_vecdot(vl, rho_t), _vecdot(vr, rho_t)) > 0)
        if idx is None:
            acc_t += accept
            nlf_t += n_grad
            dep_t += valid
            div_t |= diverged
        else:
            acc_t.index_add_(0, idx, accept)
            nlf_t.index_add_(0, idx, n_grad)
            dep_t.index_add_(0, idx, valid.long())
            # Rows in the batch have not diverged before (divergence ends a tree).
            div_t.index_copy_(0, idx, diverged)
        tree = [xl, pl, gl, xr, pr, gr, rho_t, logw_t, px, pe, pg, h0, eps]
        if depth == max_depth - 1:
            break
        sel = torch.nonzero(still).squeeze(1)  # the one host sync per doubling
        m = sel.numel()
        if m == n:
            continue
        # Chains leave the batch: keep every row's proposal, then compact the survivors.
        if idx is None:
            out, idx = [px, pe, pg], sel  # fresh tensors from torch.where: ours to write
        else:
            for full, part in zip(out, (px, pe, pg), strict=True):
                full.index_copy_(0, idx, part)
            idx = idx.index_select(0, sel)
        if m == 0:
            flushed = True
            break
        tree = [t.index_select(0, sel) for t in tree]
        # Energies that depend on the row (tempered replicas) follow the compaction.
        take_rows = getattr(energy, "take_rows", None)
        if take_rows is not None and not fixed:
            evaluate = flat_energy_and_grad(take_rows(idx), shape[1:])
    px, pe, pg = tree[8:11]
    if not out:
        out = [px, pe, pg]
    elif not flushed:
        for full, part in zip(out, (px, pe, pg), strict=True):
            full.index_copy_(0, idx, part)
    info = {
        "accept_prob": acc_t / nlf_t.clamp(min=1),
        "tree_depth": dep_t,
        "n_grad": nlf_t,
        "divergent": div_t,
    }
    return out[0], out[1], out[2], info
