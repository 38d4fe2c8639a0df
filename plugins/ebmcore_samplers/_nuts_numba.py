"""NUTS's per-leaf bookkeeping on the CPU as numba kernels, so a leaf costs one energy call.

The lockstep transition of :mod:`ebmcore_samplers._nuts_tree` spends ~30 small torch
operations per leaf (kicks, drift, energy error, log-sum-exp weight, multinomial pick,
checkpoints, U-turn checks, divergence); on small models their dispatch costs more than the
energy. Here the same mathematics runs as three ``numba.njit`` kernels on numpy views of CPU
tensors, with only the energy-and-gradient call left to torch:

- :func:`_init` fills the tree record from the starting point and momentum;
- :func:`_begin` starts a doubling: direction, first half kick and drift of the new half;
- :func:`_leaf` finishes a leaf (second half kick, energy error, weight, proposal pick,
  checkpoints and U-turn checks, divergence), merges the half into the tree at its last
  leaf, and for the chains still growing makes the next leaf's half kick and drift.

The positions handed to the energy hold only the chains still growing, compacted at every
leaf: a chain whose tree stops costs no further gradient. The random numbers are drawn
from the torch generator in the same order and shapes as the torch transition (one
``(2**depth + 2, n)`` uniform block per doubling over the ``n`` chains that start it), so
from the same seed both build the same trees, up to floating-point rounding.

Layouts (``B`` chains, ``D`` flat coordinates, rows indexed by chain): ``vec`` ``(NV, B, D)``
holds the tree's vectors, ``sca`` ``(NS, B)`` its per-chain numbers in the chains' dtype,
``ints`` ``(NI, B)`` its per-chain integers; ``ck`` ``(3, depth, n, D)`` the checkpoints of
the half being built (momentum, velocity, summed momentum), indexed by the chain's column
``n`` in the doubling's random block. ``minv`` is ``(1, 1)`` (identity), ``(1, D)``
(diagonal inverse mass) or ``(D, D)`` (dense), told apart by ``kind`` 0, 1, 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
import torch

from ebmcore.energy import Energy
from ebmcore_samplers._nuts_tree import flat_energy_and_grad, leaf_plan
from ebmcore_samplers.metric import Metric

# Rows of ``vec``: tree ends, summed momentum, proposal, the half's proposal and summed
# momentum, the current momentum and a scratch velocity.
XL, PL, GL, XR, PR, GR, RHOT, PX, PG, SX, SG, RHO, P, VEL = range(14)
NV = 14
# Rows of ``sca``: initial H, step size, tree and half log weights, proposal energies, the
# summed acceptance statistic, the doubling's signed step and half step (in the chains' dtype,
# so the kicks and drifts run in it).
H0, EPS, LOGWT, LOGW, PE, SE, ACC, STEP, HALF = range(9)
NS = 9
# Rows of ``ints``: gradients, depth, divergence, direction, column in the doubling's random
# block, and (first ``m`` entries) the chains still growing, in increasing order.
NGRAD, DEPTH, DIV, FWD, COL, ACT = range(6)
NI = 6

# Reassociation lets the dot products vectorise; NaN and infinity keep their meaning.
_jit = numba.njit(cache=True, error_model="numpy", nogil=True,
                  fastmath={"reassoc", "contract", "nsz", "arcp"})
# The per-chain steps that both the lockstep and the asynchronous kernels loop over: inlined
# into those loops (as separate calls they cost the lockstep kernel about 4 % per leaf).
_jit_inline = numba.njit(cache=True, error_model="numpy", nogil=True, inline="always",
                         fastmath={"reassoc", "contract", "nsz", "arcp"})


@_jit
def _velocity(p, out, minv, kind):  # noqa: ANN001, ANN202
    """``out = M^-1 p``."""
    d = p.shape[0]
    if kind == 0:
        for i in range(d):
            out[i] = p[i]
    elif kind == 1:
        for i in range(d):
            out[i] = p[i] * minv[0, i]
    else:
        for i in range(d):
            s = 0.0
            for k in range(d):
                s += minv[i, k] * p[k]
            out[i] = s


@_jit
def _kick(p, g, half, out, minv, kind):  # noqa: ANN001, ANN202
    """``p -= half * g``, then ``out = M^-1 p``; return ``p . out`` (twice the kinetic)."""
    d = p.shape[0]
    for i in range(d):
        p[i] -= half * g[i]
    if kind == 2:
        _velocity(p, out, minv, kind)
        return _dot(p, out)
    s = 0.0
    if kind == 1:
        for i in range(d):
            w = p[i] * minv[0, i]
            out[i] = w
            s += p[i] * w
    else:
        for i in range(d):
            out[i] = p[i]
            s += p[i] * p[i]
    return s


@_jit
def _copy(dst, src):  # noqa: ANN001, ANN202
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@_jit
def _dot(a, b):  # noqa: ANN001, ANN202
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@_jit
def _logaddexp(a, b):  # noqa: ANN001, ANN202
    if a == b:  # also both infinite of one sign
        return a + math.log(2.0)
    hi, lo = (a, b) if a > b else (b, a)
    if lo == -math.inf:
        return hi
    return hi + math.log1p(math.exp(lo - hi))


@_jit_inline
def _init_chain(vec, sca, ints, c, x, p, g, e, eps, minv, msqrt, kind):  # noqa: ANN001, ANN202
    """Fill chain ``c``'s tree record from its start ``x`` (energy ``e``, gradient ``g``);
    ``p`` holds standard normal draws on entry and the momentum ``N(0, M)`` on return
    (``msqrt``: ``M``'s factor); ``x`` may be the record's own proposal row."""
    d = x.shape[0]
    if kind == 1:
        for i in range(d):
            p[i] *= msqrt[0, i]
    elif kind == 2:  # xi @ L^T, L L^T = M
        xi = vec[VEL, c]
        _copy(xi, p)
        for i in range(d):
            s = 0.0
            for k in range(i + 1):
                s += xi[k] * msqrt[k, i]
            p[i] = s
    for r in (XL, XR, PX):
        _copy(vec[r, c], x)
    for r in (PL, PR, RHOT):
        _copy(vec[r, c], p)
    for r in (GL, GR, PG):
        _copy(vec[r, c], g)
    v = vec[VEL, c]
    _velocity(p, v, minv, kind)
    sca[H0, c] = 0.5 * _dot(v, p) + e
    sca[EPS, c] = eps
    sca[LOGWT, c] = 0.0
    sca[PE, c] = e
    sca[ACC, c] = 0.0
    ints[NGRAD, c] = 0
    ints[DEPTH, c] = 0
    ints[DIV, c] = 0


@_jit
def _init(vec, sca, ints, x, p0, g, e, eps, minv, msqrt, kind):  # noqa: ANN001, ANN202
    """Fill the tree record of every chain from its start ``x``; ``p0`` holds standard
    normal draws on entry and the momenta ``N(0, M)`` on return (``msqrt``: ``M``'s factor)."""
    for c in range(x.shape[0]):
        _init_chain(vec, sca, ints, c, x[c], p0[c], g[c], e[c], eps[c], minv, msqrt, kind)
        ints[ACT, c] = c


@_jit
def _finish(vec, sca, ints, xo, go, fo, io, div):  # noqa: ANN001, ANN202
    """Write the proposals ``xo``, ``go``, energies and acceptance statistics ``fo``, and
    gradient counts and depths ``io``, divergence ``div`` of every chain."""
    for c in range(xo.shape[0]):
        _copy(xo[c], vec[PX, c])
        _copy(go[c], vec[PG, c])
        fo[0, c] = sca[PE, c]
        n = ints[NGRAD, c]
        fo[1, c] = sca[ACC, c] / max(n, 1)
        io[0, c] = n
        io[1, c] = ints[DEPTH, c]
        div[c] = ints[DIV, c] != 0


@_jit_inline
def _begin_chain(vec, sca, ints, c, fwd, xout, minv, kind):  # noqa: ANN001, ANN202
    """Start a doubling of chain ``c`` in direction ``fwd``: half kick, drift into ``xout``."""
    ints[FWD, c] = fwd
    sca[STEP, c] = sca[EPS, c] if fwd else -sca[EPS, c]
    sca[HALF, c] = 0.5 * sca[STEP, c]
    step, half = sca[STEP, c], sca[HALF, c]
    ex, ep, eg = (XR, PR, GR) if fwd else (XL, PL, GL)
    p, v = vec[P, c], vec[VEL, c]
    _copy(p, vec[ep, c])
    _kick(p, vec[eg, c], half, v, minv, kind)
    x0 = vec[ex, c]
    for i in range(p.shape[0]):
        xout[i] = x0[i] + step * v[i]


@_jit
def _begin(vec, sca, ints, u, xc, minv, kind, m):  # noqa: ANN001, ANN202
    """Start a doubling for the ``m`` growing chains: direction, half kick, drift into ``xc``."""
    for j in range(m):
        c = ints[ACT, j]
        ints[COL, c] = j
        _begin_chain(vec, sca, ints, c, u[0, j] < 0.5, xc[j], minv, kind)


@_jit_inline
def _advance(vec, sca, c, g, x, xout, minv, kind):  # noqa: ANN001, ANN202
    """Chain ``c``'s next leaf within its half: half kick with ``g``, drift from ``x`` into
    ``xout`` (which may be ``x`` itself)."""
    p, v = vec[P, c], vec[VEL, c]
    _kick(p, g, sca[HALF, c], v, minv, kind)
    step = sca[STEP, c]
    for i in range(p.shape[0]):
        xout[i] = x[i] + step * v[i]


# What a finished leaf means for its chain (see _leaf_chain).
TREE_ENDS, NEXT_LEAF, NEXT_DOUBLING = 0, 1, 2


@_jit_inline
def _leaf_chain(vec, ck, col, sca, ints, c, xj, gj, ej, u_take, u_merge, minv, kind, leaf,
                slot, lo, hi, last, final, neg_max):  # noqa: ANN001, ANN202
    """Finish leaf ``leaf`` of chain ``c`` (energy ``ej``, gradient ``gj`` at ``xj``): second
    half kick, energy error, weight, proposal pick (uniform ``u_take``), checkpoints (column
    ``col`` of ``ck``) and U-turn checks, divergence, and at the half's last leaf the merge
    (uniform ``u_merge``). Return ``TREE_ENDS``, ``NEXT_LEAF`` or ``NEXT_DOUBLING``."""
    d = xj.shape[0]
    fwd = ints[FWD, c] != 0
    p, v, rho = vec[P, c], vec[VEL, c], vec[RHO, c]
    nd = sca[H0, c] - (0.5 * _kick(p, gj, sca[HALF, c], v, minv, kind) + ej)
    if math.isnan(nd):  # an undefined energy is an infinite energy error
        nd = -math.inf
    sca[ACC, c] += min(1.0, math.exp(nd))
    ints[NGRAD, c] += 1
    stop = nd < neg_max
    if stop:
        ints[DIV, c] = 1
    if leaf == 0:
        sca[LOGW, c] = nd
        _copy(rho, p)
        take = math.isfinite(nd)
    else:
        new_logw = _logaddexp(sca[LOGW, c], nd)
        take = u_take < math.exp(nd - new_logw)
        sca[LOGW, c] = new_logw
        for i in range(d):
            rho[i] += p[i]
    if take:
        _copy(vec[SX, c], xj)
        _copy(vec[SG, c], gj)
        sca[SE, c] = ej
    if slot >= 0:
        _copy(ck[0, slot, col], p)
        _copy(ck[1, slot, col], v)
        _copy(ck[2, slot, col], rho)
    for s in range(lo, hi + 1):
        if stop:
            break
        a = 0.0
        bb = 0.0
        cp, cv, cr = ck[0, s, col], ck[1, s, col], ck[2, s, col]
        for i in range(d):
            span = rho[i] - cr[i] + cp[i]
            a += cv[i] * span
            bb += v[i] * span
        stop = a <= 0.0 or bb <= 0.0
    if stop:
        return TREE_ENDS  # the half is discarded: the tree ends with its proposal as it is
    if not last:
        return NEXT_LEAF
    ex, ep, eg = (XR, PR, GR) if fwd else (XL, PL, GL)
    _copy(vec[ex, c], xj)
    _copy(vec[ep, c], p)
    _copy(vec[eg, c], gj)
    if u_merge < math.exp(sca[LOGW, c] - sca[LOGWT, c]):
        _copy(vec[PX, c], vec[SX, c])
        _copy(vec[PG, c], vec[SG, c])
        sca[PE, c] = sca[SE, c]
    sca[LOGWT, c] = _logaddexp(sca[LOGWT, c], sca[LOGW, c])
    rt = vec[RHOT, c]
    for i in range(d):
        rt[i] += rho[i]
    ints[DEPTH, c] += 1
    if final:
        return TREE_ENDS
    _velocity(vec[PL, c], v, minv, kind)
    if not _dot(v, rt) > 0.0:
        return TREE_ENDS
    _velocity(vec[PR, c], v, minv, kind)
    if not _dot(v, rt) > 0.0:
        return TREE_ENDS
    return NEXT_DOUBLING


@_jit
def _leaf(vec, ck, sca, ints, u, xc, g, e, minv, kind, m, leaf, slot, lo, hi, last,
          final, neg_max):  # noqa: ANN001, ANN202
    """Finish leaf ``leaf`` of the ``m`` growing chains (energies ``e`` and gradients ``g`` at
    ``xc``, rows in the order of ``ints[ACT]``); return how many still grow, compacted."""
    k = 0
    for j in range(m):
        c = ints[ACT, j]
        col = ints[COL, c]
        u_merge = u[leaf + 2, col] if last else 0.0
        status = _leaf_chain(vec, ck, col, sca, ints, c, xc[j], g[j], e[j], u[leaf + 1, col],
                             u_merge, minv, kind, leaf, slot, lo, hi, last, final, neg_max)
        if status == TREE_ENDS:
            continue
        if status == NEXT_LEAF:  # rows move up to row k
            _advance(vec, sca, c, g[j], xc[j], xc[k], minv, kind)
        ints[ACT, k] = c
        k += 1
    return k


def supports(x: torch.Tensor) -> bool:
    """Whether the numba transition runs for chains ``x``: CPU, float32 or float64."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _as_array(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """The numpy view of an energy's output in the chains' dtype (a copy only if needed)."""
    if t.dtype != dtype or not t.is_contiguous() or t.requires_grad:
        t = t.detach().to(dtype).contiguous()
    return t.numpy()


def _metric_arrays(metric: Metric, dt: torch.dtype) -> tuple[int, np.ndarray, np.ndarray]:
    """``(kind, minv, msqrt)`` of ``metric`` for the kernels, cached on the metric."""
    cached = getattr(metric, "_nuts_numba", None)
    if cached is not None and cached[0] == dt:
        return cached[1]
    d = metric.dim
    if metric.kind == "identity":
        one = np.zeros((1, 1), dtype=np.float32 if dt == torch.float32 else np.float64)
        arrays = (0, one, one)
    else:
        inv, sqrt = (_as_array(t.to("cpu"), dt) for t in (metric.inv, metric.sqrt))
        kind = 1 if metric.kind == "diag" else 2
        arrays = (kind, inv.reshape(1, d), sqrt.reshape(1, d)) if kind == 1 else (2, inv, sqrt)
    metric._nuts_numba = (dt, arrays)
    return arrays


def transition(evaluate_rows: Callable[[torch.Tensor | None], Callable], x: torch.Tensor,
               e: torch.Tensor, g: torch.Tensor, step_size: torch.Tensor, metric: Metric,
               max_depth: int, max_energy_error: float, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One NUTS transition for every chain, bookkeeping in numba (see the module docstring).

    Draws the momenta and uniforms from ``generator`` exactly as the torch transition does.

    Args:
        evaluate_rows: ``evaluate_rows(rows)`` returns the flat energy-and-gradient function
            for the chains ``rows`` (a long tensor, ``None`` for all chains in order).
        x: Flat positions ``(B, D)`` on the CPU, float32 or float64.
        e: Energies ``(B,)``.
        g: Flat gradients ``(B, D)``.
        step_size: Per-chain step sizes ``(B,)``.
        metric: The mass matrix.
        max_depth: Maximum number of doublings.
        max_energy_error: Energy error beyond which a leaf is divergent.
        generator: Source of the momenta and uniform draws.

    Returns:
        New flat positions, energies and gradients, and the info of
        :func:`ebmcore_samplers._nuts_tree.transition`.
    """
    b, d = x.shape
    dt = x.dtype
    npdt = np.float32 if dt == torch.float32 else np.float64
    kind, minv, msqrt = _metric_arrays(metric, dt)
    vec = np.empty((NV, b, d), dtype=npdt)
    sca = np.empty((NS, b), dtype=npdt)
    ints = np.empty((NI, b), dtype=np.int64)
    xc = np.empty((b, d), dtype=npdt)  # the growing chains' positions, compacted
    xc_t = torch.from_numpy(xc)
    torch.randn((b, d), generator=generator, dtype=dt, out=xc_t)  # Metric.draw_'s normals
    _init(vec, sca, ints, _as_array(x, dt), xc, _as_array(g, dt), _as_array(e, dt),
          _as_array(step_size, dt), minv, msqrt, kind)
    evaluate = evaluate_rows(None)
    neg_max = -float(max_energy_error)
    m = b
    xm = xc_t
    for depth in range(max_depth):
        u = torch.rand((2 ** depth + 2, m), generator=generator, dtype=dt).numpy()
        ck = np.empty((3, depth, m, d), dtype=npdt)
        _begin(vec, sca, ints, u, xc, minv, kind, m)
        plan = leaf_plan(depth)
        final = depth == max_depth - 1
        last = len(plan) - 1
        for leaf, (slot, lo, hi) in enumerate(plan):
            e_l, g_l = evaluate(xm)
            m_new = _leaf(vec, ck, sca, ints, u, xc, _as_array(g_l, dt), _as_array(e_l, dt),
                          minv, kind, m, leaf, slot, lo, hi, leaf == last, final, neg_max)
            if m_new != m:
                m = m_new
                if m == 0:
                    break
                xm = xc_t[:m]
                evaluate = evaluate_rows(torch.from_numpy(ints[ACT, :m].copy()))
        if m == 0 or final:
            break
    xo, go = np.empty((b, d), dtype=npdt), np.empty((b, d), dtype=npdt)
    fo, io, div = np.empty((2, b), dtype=npdt), np.empty((2, b), np.int64), np.empty(b, np.bool_)
    _finish(vec, sca, ints, xo, go, fo, io, div)
    info = {"accept_prob": torch.from_numpy(fo[1]), "tree_depth": torch.from_numpy(io[1]),
            "n_grad": torch.from_numpy(io[0]), "divergent": torch.from_numpy(div)}
    return torch.from_numpy(xo), torch.from_numpy(fo[0]), torch.from_numpy(go), info


def rows_evaluator(energy: Energy, event: torch.Size
                   ) -> Callable[[torch.Tensor | None], Callable]:
    """``evaluate_rows`` for :func:`transition`: the energy (or its ``take_rows(rows)``, for
    energies whose value depends on the row) on flat points, returning flat gradients."""
    take_rows = getattr(energy, "take_rows", None)

    def evaluate_rows(rows: torch.Tensor | None) -> Callable:
        if rows is None or take_rows is None:
            return flat_energy_and_grad(energy, event)
        return flat_energy_and_grad(take_rows(rows), event)

    return evaluate_rows
