"""Asynchronous NUTS on the CPU: every chain runs its own transitions, one energy call per leaf.

In the lockstep transition (:mod:`ebmcore_samplers._nuts_numba`) every chain waits at the end
of each transition for the deepest tree in the batch: where tree depths vary (Neal's funnel),
a transition costs as many batched energy calls as the longest tree has leaves, most of
them for a handful of chains. Here a chain whose tree ends records its draw, adapts its own
step size and starts its next transition at once, so every batched call carries one leaf of
every chain and a run costs about as many calls as the busiest chain has leaves.

The trees are those of the lockstep kernels (the same per-chain functions build them: the
multinomial NUTS of Betancourt 2017, as in Stan and BlackJAX), with each chain's randomness
from its own xoroshiro128+ stream (:mod:`ebmcore_samplers.kernels.rng`) seeded from the
run's torch generator, so a seed gives the same bits.

Adaptation is NUTS's own (:class:`~ebmcore_samplers.nuts.NUTS`): per-chain dual averaging,
here inside the kernel at each chain's transition, and a mass matrix pooled over all chains
in Stan's windows. A window's end is a barrier: each chain accumulates its own positions
(Welford) and stops there; once all have, the pooled estimate replaces the mass and the
step-size heuristic runs from the current step sizes, as in the lockstep sampler.

Layouts: ``vec``, ``sca``, ``ints`` are the lockstep kernels' tree record (rows ``XL``...);
``ai`` ``(NAI, B)`` and ``af`` ``(NAF, B)`` hold each chain's iteration, leaf, counts and
dual-averaging state; ``ck`` ``(3, max_depth, B, D)`` the checkpoints of each chain's half.
"""

from __future__ import annotations

import math

import numpy as np

from ebmcore_samplers._nuts_numba import (
    ACC,
    ACT,
    DEPTH,
    DIV,
    NEXT_LEAF,
    NGRAD,
    PE,
    PG,
    PX,
    TREE_ENDS,
    P,
    _advance,
    _begin_chain,
    _init_chain,
    _jit,
    _leaf_chain,
)
from ebmcore_samplers.kernels import rng as _rng

_RNG = _rng.make_rng(_jit)
_uniform = _RNG.uniform
_fill_normal = _RNG.fill_normal
_seed_chain = _RNG.seed_chain

# Rows of ``ai``: transitions done, leaf within the half, gradients in warm-up and in the kept
# phase, divergent kept transitions.
ITER, LEAF, NG_WARM, NG_KEPT, NDIV = range(5)
NAI = 5
# Rows of ``af``: dual averaging (mu, log step, averaged log step, h bar, its iteration), the
# step size in use, and the kept phase's summed acceptance statistic and tree depth.
MU, LOGSTEP, LOGBAR, HBAR, DAT, BASE, ACCSUM, DEPTHSUM = range(8)
NAF = 8
# Entries of the integer settings ``cfg_i``.
(MAX_DEPTH, BURN_IN, SEG_END, WIN_START, WIN_END, ADAPT_STEP, THIN, N_KEPT, STRIDE, RECORD,
 DENSE) = range(11)
# Entries of the float settings ``cfg_f``.
NEG_MAX, TARGET, GAMMA, T0, KAPPA, JITTER = range(6)


@_jit
def seed_streams(rng, seed):  # noqa: ANN001, ANN201
    """Seed each chain's stream (rows of ``rng``, ``(B, 2)`` uint64) from ``seed``."""
    for c in range(rng.shape[0]):
        _seed_chain(rng[c], seed, c)


@_jit
def _dual_update(af, c, alpha, target, gamma, t0, kappa):  # noqa: ANN001, ANN202
    """One dual-averaging step of chain ``c`` (as :class:`~ebmcore_samplers.adaptation.
    DualAveraging.update`): a non-finite statistic counts as 0, +inf as 1."""
    if math.isnan(alpha):
        alpha = 0.0
    alpha = min(1.0, max(0.0, alpha))
    af[DAT, c] += 1.0
    t = af[DAT, c]
    w = 1.0 / (t + t0)
    af[HBAR, c] = (1.0 - w) * af[HBAR, c] + w * (target - alpha)
    af[LOGSTEP, c] = af[MU, c] - math.sqrt(t) / gamma * af[HBAR, c]
    eta = t ** (-kappa)
    af[LOGBAR, c] = (1.0 - eta) * af[LOGBAR, c] + eta * af[LOGSTEP, c]
    af[BASE, c] = math.exp(af[LOGSTEP, c])


@_jit
def _welford_add(wn, wmean, wm2, c, x, dense):  # noqa: ANN001, ANN202
    """Add position ``x`` to chain ``c``'s running mean and (diagonal or dense) ``M2``."""
    wn[c] += 1
    n = wn[c]
    mean, m2 = wmean[c], wm2[c]
    d = x.shape[0]
    delta = np.empty(d)
    for i in range(d):
        delta[i] = x[i] - mean[i]
        mean[i] += delta[i] / n
    if dense:
        for i in range(d):
            for k in range(d):
                m2[i, k] += delta[i] * (x[k] - mean[k])
    else:
        for i in range(d):
            m2[0, i] += delta[i] * (x[i] - mean[i])


@_jit
def _start(vec, sca, ints, ai, af, rng, c, xout, minv, msqrt, kind, jitter):  # noqa: ANN001, ANN202
    """Start chain ``c``'s next transition from its proposal row: momentum, step size (with
    jitter), tree record, and the first doubling's half kick and drift into ``xout``."""
    st = rng[c]
    p = vec[P, c]
    _fill_normal(st, p, p.shape[0])
    eps = af[BASE, c]
    if jitter > 0.0:
        eps *= 1.0 - jitter + 2.0 * jitter * _uniform(st)
    _init_chain(vec, sca, ints, c, vec[PX, c], p, vec[PG, c], sca[PE, c], eps, minv, msqrt,
                kind)
    ai[LEAF, c] = 0
    _begin_chain(vec, sca, ints, c, _uniform(st) < 0.5, xout, minv, kind)


@_jit
def start_segment(vec, sca, ints, ai, af, rng, xc, minv, msqrt, kind, cfg_i, cfg_f):  # noqa: ANN001, ANN201
    """Start a transition for every chain short of the segment's end; return how many
    (their positions in ``xc``, chains in ``ints[ACT]`` in increasing order)."""
    k = 0
    for c in range(xc.shape[0]):
        if ai[ITER, c] < cfg_i[SEG_END]:
            _start(vec, sca, ints, ai, af, rng, c, xc[k], minv, msqrt, kind, cfg_f[JITTER])
            ints[ACT, k] = c
            k += 1
    return k


@_jit
def _finish(vec, sca, ints, ai, af, c, wn, wmean, wm2, trace, traj, cfg_i, cfg_f):  # noqa: ANN001, ANN202
    """Chain ``c``'s transition has ended: count it, adapt (warm-up) or record (kept phase)."""
    n = ints[NGRAD, c]
    accept = sca[ACC, c] / max(n, 1)
    t = ai[ITER, c]
    burn_in = cfg_i[BURN_IN]
    if t < burn_in:
        ai[NG_WARM, c] += n
        if cfg_i[ADAPT_STEP]:
            _dual_update(af, c, accept, cfg_f[TARGET], cfg_f[GAMMA], cfg_f[T0], cfg_f[KAPPA])
            if t == burn_in - 1:  # the averaged step size from now on
                af[BASE, c] = math.exp(af[LOGBAR, c])
        if cfg_i[WIN_START] <= t < cfg_i[WIN_END]:
            _welford_add(wn, wmean, wm2, c, vec[PX, c], cfg_i[DENSE] != 0)
    else:
        i = t - burn_in
        ai[NG_KEPT, c] += n
        af[ACCSUM, c] += accept
        af[DEPTHSUM, c] += ints[DEPTH, c]
        ai[NDIV, c] += ints[DIV, c]
        thin = cfg_i[THIN]
        kept = (i + 1) // thin - 1
        if (i + 1) % thin == 0 and kept < cfg_i[N_KEPT]:
            trace[kept] += sca[PE, c]
            stride = cfg_i[STRIDE]
            if cfg_i[RECORD] and c % stride == 0:
                row, src = traj[kept, c // stride], vec[PX, c]
                for j in range(row.shape[0]):
                    row[j] = src[j]
    ai[ITER, c] = t + 1


@_jit
def leaf(vec, ck, sca, ints, ai, af, rng, plan, xc, g, e, m, minv, msqrt, kind, wn, wmean,  # noqa: ANN001, ANN201
         wm2, trace, traj, cfg_i, cfg_f):
    """Finish one leaf of each of the ``m`` active chains (energies ``e``, gradients ``g`` at
    ``xc``, rows in the order of ``ints[ACT]``); a chain whose tree ends finishes its
    transition and starts the next one if the segment has room. ``plan`` is the checkpoint
    plan of every depth (``async_backend.plan_table``). Return how many chains are active
    now, their next positions compacted into ``xc``."""
    max_depth = cfg_i[MAX_DEPTH]
    neg_max = cfg_f[NEG_MAX]
    k = 0
    for j in range(m):
        c = ints[ACT, j]
        depth = ints[DEPTH, c]
        lf = ai[LEAF, c]
        row = (1 << depth) - 1 + lf  # the lockstep kernels' plan for this leaf
        slot, lo, hi = plan[row, 0], plan[row, 1], plan[row, 2]
        last = lf == (1 << depth) - 1
        st = rng[c]
        u_take = _uniform(st)
        u_merge = _uniform(st) if last else 0.0
        status = _leaf_chain(vec, ck, c, sca, ints, c, xc[j], g[j], e[j], u_take, u_merge,
                             minv, kind, lf, slot, lo, hi, last, depth == max_depth - 1,
                             neg_max)
        if status == NEXT_LEAF:
            ai[LEAF, c] = lf + 1
            _advance(vec, sca, c, g[j], xc[j], xc[k], minv, kind)
        elif status != TREE_ENDS:  # the next doubling
            ai[LEAF, c] = 0
            _begin_chain(vec, sca, ints, c, _uniform(st) < 0.5, xc[k], minv, kind)
        else:
            _finish(vec, sca, ints, ai, af, c, wn, wmean, wm2, trace, traj, cfg_i, cfg_f)
            if ai[ITER, c] >= cfg_i[SEG_END]:
                continue
            _start(vec, sca, ints, ai, af, rng, c, xc[k], minv, msqrt, kind, cfg_f[JITTER])
        ints[ACT, k] = c
        k += 1
    return k
