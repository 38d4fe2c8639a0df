"""NUTS against a bare-PyTorch floor that builds the same lockstep trees by hand.

The floor is the multinomial NUTS transition written as one function with local tensors:
the analytic Gaussian gradient ``x @ P`` inline, no Energy module, no inverse mass, no shape
handling, no info dictionary, no state object. It takes the shortcuts a careful hand-written
version would, the same ones the sampler takes: a chain that stops inside a half keeps
moving unmasked (the half is discarded at the merge, so its log weight, proposal and summed
momentum need no per-leaf masking); the energy errors and "still growing" flags of a
doubling go into one buffer each, and the diagnostics (acceptance statistic, gradient count,
divergence) are reduced once per doubling; the first leaf of a half skips its log-sum-exp;
the batch is compacted to the still-growing chains with one host synchronisation per
doubling and never copied back whole. It draws its random numbers in the same order as
``ebmcore_samplers.nuts.NUTS``, so from the same seed both build the very same trees; the
script first checks that both give identical samples, energies, gradients and diagnostics,
then times ``NUTS.step`` and the floor from the same state and seed, interleaved, after a
warm-up, with torch pinned to one thread. It prints median milliseconds per transition, the
median ratio NUTS / floor with its range over repetitions, and gradient evaluations per
chain.

Run: ``python benchmarks/samplers_nuts.py [--reps 15] [--quick]``
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time

import numba  # noqa: F401  (imported first: it can reset torch's OpenMP thread count)
import torch
from ebmcore_samplers._nuts_tree import checkpoint_range
from ebmcore_samplers.nuts import NUTS

from ebmcore.energy import Energy


class Gaussian(Energy):
    """Zero-mean Gaussian with precision ``P``: the same mathematics as the floor."""

    def __init__(self, prec: torch.Tensor) -> None:
        super().__init__()
        self.prec = prec
        self.event_shape = (prec.shape[0],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vecdot(x @ self.prec, x).mul_(0.5)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = x @ self.prec
        return torch.linalg.vecdot(g, x).mul_(0.5), g


@functools.cache
def leaf_plan(depth: int) -> tuple[tuple[int, range], ...]:
    """Per leaf of a half of ``2**depth`` leaves: the checkpoint slot it fills (-1: none) and
    the checkpoint slots whose balanced sub-trees end at it."""
    if depth == 0:
        return ((-1, range(0)),)
    plan = []
    for leaf in range(2 ** depth):
        lo, hi = checkpoint_range(leaf)
        plan.append((hi, range(0)) if leaf % 2 == 0 else (-1, range(lo, hi + 1)))
    return tuple(plan)


def floor_transition(x: torch.Tensor, e: torch.Tensor, g: torch.Tensor, eps: torch.Tensor,
                     prec: torch.Tensor, max_depth: int, max_error: float,
                     gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """One multinomial NUTS transition by hand (unit mass, analytic gradient).

    Returns the new positions, energies and gradients, and per chain the acceptance
    statistic, tree depth, gradient count and divergence flag.
    """
    vecdot = torch.linalg.vecdot
    b = x.shape[0]
    neg_max = -max_error
    p0 = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    h0 = vecdot(p0, p0).mul_(0.5).add_(e)
    # Tree of the chains in the batch: ends, summed momentum, log weight, proposal, H0, eps.
    tree = [x, p0, g, x, p0, g, p0, torch.zeros_like(e), x, e, g, h0, eps]
    acc = torch.zeros_like(e)
    nlf = torch.zeros(b, dtype=torch.long)
    dep = torch.zeros(b, dtype=torch.long)
    div = torch.zeros(b, dtype=torch.bool)
    idx = None  # rows of the compacted batch in the full batch
    out: list[torch.Tensor] = []  # full-size proposal once the batch is compacted
    for depth in range(max_depth):
        xl, pl, gl, xr, pr, gr, rho_t, logw_t, px, pe, pg, h0, step_size = tree
        n = xl.shape[0]
        n_leaves = 1 << depth
        u = torch.rand((n_leaves + 2, n), generator=gen, dtype=x.dtype).unbind(0)
        fwd = u[0] < 0.5
        fwd_b = fwd.unsqueeze(1)
        step = torch.where(fwd, step_size, -step_size).unsqueeze(1)
        half = 0.5 * step
        xc, pc, gc = (torch.where(fwd_b, xr, xl), torch.where(fwd_b, pr, pl),
                      torch.where(fwd_b, gr, gl))
        neg_delta = torch.empty((n_leaves, n), dtype=x.dtype)  # row j: H0 - H at leaf j
        grow = torch.empty((n_leaves + 1, n), dtype=torch.bool)  # row j: growing at leaf j
        alive = grow[0].fill_(True)
        sx, se, sg = xc, pe, gc
        ck_p: list = [None] * depth
        ck_r: list = [None] * depth
        logw = rho = neg_delta
        for leaf, (slot, checks) in enumerate(leaf_plan(depth)):
            # Chains that stopped inside this half keep moving: the half is discarded.
            pc = torch.addcmul(pc, half, gc, value=-1.0)
            xc = torch.addcmul(xc, step, pc)
            gc = xc @ prec
            ec = vecdot(gc, xc).mul_(0.5)
            pc = torch.addcmul(pc, half, gc, value=-1.0)
            nd = torch.sub(h0, vecdot(pc, pc).mul_(0.5).add_(ec), out=neg_delta[leaf])
            nd.nan_to_num_(nan=-math.inf, posinf=math.inf, neginf=-math.inf)  # NaN: diverged
            if leaf == 0:  # the half's log weight is the leaf's own
                logw, rho = nd, pc
                take = torch.isfinite(nd)
            else:
                new_logw = torch.logaddexp(logw, nd)
                take = u[leaf + 1] < (nd - new_logw).exp_()
                logw = new_logw
                rho = rho + pc
            tb = take.unsqueeze(1)
            sx = torch.where(tb, xc, sx)
            sg = torch.where(tb, gc, sg)
            se = torch.where(take, ec, se)
            stop = nd < neg_max
            if slot >= 0:
                ck_p[slot], ck_r[slot] = pc, rho
            for i in checks:  # U-turn on each balanced sub-tree ending here
                span = (rho - ck_r[i]).add_(ck_p[i])
                stop.logical_or_(torch.fmin(vecdot(ck_p[i], span), vecdot(pc, span)) <= 0)
            alive = torch.gt(alive, stop, out=grow[leaf + 1])  # alive & ~stop
        # Diagnostics of the doubling over the leaves where each chain still grew.
        grew = grow[:n_leaves]
        acc_d = neg_delta.exp().clamp_(max=1.0).mul_(grew).sum(0)
        nlf_d = grew.sum(0)
        div_d = (neg_delta < neg_max).logical_and_(grew).any(0)
        # Merge: a half that stopped early is discarded.
        right = (alive & fwd).unsqueeze(1)
        left = torch.gt(alive, fwd).unsqueeze(1)
        xr, pr, gr = (torch.where(right, xc, xr), torch.where(right, pc, pr),
                      torch.where(right, gc, gr))
        xl, pl, gl = (torch.where(left, xc, xl), torch.where(left, pc, pl),
                      torch.where(left, gc, gl))
        take = alive & (u[n_leaves + 1] < (logw - logw_t).exp_())
        tb = take.unsqueeze(1)
        px, pg, pe = torch.where(tb, sx, px), torch.where(tb, sg, pg), torch.where(take, se, pe)
        logw_t = torch.where(alive, torch.logaddexp(logw_t, logw), logw_t)
        rho_t = torch.where(alive.unsqueeze(1), rho_t + rho, rho_t)
        still = alive & (torch.minimum(vecdot(pl, rho_t), vecdot(pr, rho_t)) > 0)
        if idx is None:
            acc += acc_d
            nlf += nlf_d
            dep += alive
            div |= div_d
        else:
            acc.index_add_(0, idx, acc_d)
            nlf.index_add_(0, idx, nlf_d)
            dep.index_add_(0, idx, alive.long())
            div.index_copy_(0, idx, div_d)
        tree = [xl, pl, gl, xr, pr, gr, rho_t, logw_t, px, pe, pg, h0, step_size]
        if depth == max_depth - 1:
            break
        sel = torch.nonzero(still).squeeze(1)  # the one host sync per doubling
        if sel.numel() == n:
            continue
        # Finished chains leave their proposal in the full-size output.
        if idx is None:
            out, idx = [px, pe, pg], sel
        else:
            for full, part in zip(out, (px, pe, pg), strict=True):
                full.index_copy_(0, idx, part)
            idx = idx.index_select(0, sel)
        if sel.numel() == 0:
            tree = []
            break
        tree = [v.index_select(0, sel) for v in tree]
    if not out:
        out = tree[8:11]
    elif tree:
        for full, part in zip(out, tree[8:11], strict=True):
            full.index_copy_(0, idx, part)
    return out[0], out[1], out[2], acc / nlf.clamp(min=1), dep, nlf, div


def check_identical(sampler: NUTS, energy: Gaussian, x0: torch.Tensor) -> None:
    """Both implementations must build the same trees, with the same diagnostics."""
    state = sampler.init(energy, x0)
    x, e, g = state.x, state.energy, state.grad
    gen_a, gen_b = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):
        state, info = sampler.step(energy, state, gen_a)
        x, e, g, *diag = floor_transition(x, e, g, state.step_size, energy.prec,
                                          sampler.max_tree_depth, sampler.max_energy_error,
                                          gen_b)
        ours = (state.x, state.energy, state.grad, info["acceptance"], info["tree_depth"],
                info["n_grad"], info["diverged"])
        if not all(torch.equal(a, b) for a, b in zip(ours, (x, e, g, *diag), strict=True)):
            raise AssertionError("the floor and NUTS built different trees")


def bench(b: int, dim: int, step_size: float, reps: int, warmup: int, k: int) -> None:
    """Time ``k`` transitions of each, ``reps`` interleaved times; print one row."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    prec = torch.linalg.inv(cov).to(torch.float32)
    energy = Gaussian(prec)
    x0 = torch.randn(b, dim, generator=gen)
    sampler = NUTS(step_size=step_size, adapt_mass=False, adapt_step_size=False)
    check_identical(sampler, energy, x0)
    state0 = sampler.init(energy, x0)
    eps = state0.step_size
    max_error = sampler.max_energy_error

    def run_nuts(seed: int) -> float:
        g = torch.Generator().manual_seed(seed)
        state = state0
        start = time.perf_counter()
        for _ in range(k):
            state, _info = sampler.step(energy, state, g)
        return time.perf_counter() - start

    def run_floor(seed: int) -> float:
        g = torch.Generator().manual_seed(seed)
        x, e, gr = state0.x, state0.energy, state0.grad
        start = time.perf_counter()
        for _ in range(k):
            x, e, gr, *_diag = floor_transition(x, e, gr, eps, prec, sampler.max_tree_depth,
                                                max_error, g)
        return time.perf_counter() - start

    for i in range(warmup):
        run_nuts(i)
        run_floor(i)
    t_nuts, t_floor, ratios = [], [], []
    for r in range(reps):
        tn = run_nuts(100 + r)
        tf = run_floor(100 + r)
        t_nuts.append(tn / k)
        t_floor.append(tf / k)
        ratios.append(tn / tf)
    _, info = sampler.step(energy, state0, torch.Generator().manual_seed(100))
    grads = info["n_grad"].double().mean()
    print(f"{b:7d} {dim:4d} {step_size:6.2f} {float(grads):8.1f} "
          f"{1e3 * statistics.median(t_nuts):10.2f} {1e3 * statistics.median(t_floor):10.2f} "
          f"{statistics.median(ratios):7.3f} [{min(ratios):.3f}, {max(ratios):.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions")
    parser.add_argument("--k", type=int, default=5, help="transitions per repetition")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    args = parser.parse_args()
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1, torch.get_num_threads()
    cases = [(100, 2, 0.3), (1000, 2, 0.3), (1000, 50, 0.2), (10000, 10, 0.3)]
    if args.quick:
        cases = cases[:2]
    print(f"torch {torch.__version__}, float32, 1 thread, {args.k} transitions per "
          f"repetition, median of {args.reps} interleaved repetitions after {args.warmup} "
          f"warm-up; both sides build identical trees (checked)")
    header = (f"{'chains':>7s} {'dim':>4s} {'eps':>6s} {'grads':>8s} {'nuts ms':>10s} "
              f"{'floor ms':>10s} {'ratio':>7s} [range]")
    print(header)
    print("-" * len(header))
    for b, dim, eps in cases:
        bench(b, dim, eps, args.reps, args.warmup, args.k)


if __name__ == "__main__":
    main()
