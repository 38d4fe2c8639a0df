"""NUTS against a bare-PyTorch floor that builds the same lockstep trees by hand.

The floor is the multinomial NUTS transition written as one function with local tensors:
the analytic Gaussian gradient ``x @ P`` inline, no Energy module, no record dictionary, no
info, no state object. It draws its random numbers in the same order as
``ebmcore_samplers.nuts.NUTS``, so from the same seed both build the very same trees; the
script first checks that both give identical samples and gradient counts, then times
``NUTS.step`` and the floor from the same state and seed, interleaved, after a warm-up,
with torch pinned to one thread. It prints median milliseconds per transition, the median
ratio NUTS / floor with its range over repetitions, and gradient evaluations per chain.

Run: ``python benchmarks/samplers_nuts.py [--reps 15] [--quick]``
"""

from __future__ import annotations

import argparse
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
        return 0.5 * torch.linalg.vecdot(x @ self.prec, x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = x @ self.prec
        return 0.5 * torch.linalg.vecdot(g, x), g


def floor_transition(x: torch.Tensor, e: torch.Tensor, g: torch.Tensor, eps: torch.Tensor,
                     prec: torch.Tensor, max_depth: int, gen: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One multinomial NUTS transition by hand (unit mass, analytic gradient)."""
    b = x.shape[0]
    p0 = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    h0 = e + 0.5 * torch.linalg.vecdot(p0, p0)
    # Per-chain tree: ends, summed momentum, log weight, proposal, counters.
    tree = [x, p0, g, x, p0, g, p0, torch.zeros_like(e), x, e, g, h0, eps,
            torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long),
            torch.zeros_like(e), torch.zeros(b, dtype=torch.bool)]
    active = None
    for depth in range(max_depth):
        idx = None
        if active is not None:
            idx = torch.nonzero(active).squeeze(1)
            if idx.numel() == 0:
                break
            if idx.numel() == b:
                idx = None
        t = tree if idx is None else [v.index_select(0, idx) for v in tree]
        xl, pl, gl, xr, pr, gr, rho_t, logw_t, px, pe, pg, h0_, eps_, nlf, dep, acc, div = t
        n = xl.shape[0]
        n_leaves = 2 ** depth
        u = torch.rand((n_leaves + 2, n), generator=gen, dtype=x.dtype)
        fwd = u[0] < 0.5
        fwd_b = fwd.unsqueeze(1)
        step = torch.where(fwd, eps_, -eps_).unsqueeze(1)
        half = 0.5 * step
        xc = torch.where(fwd_b, xr, xl)
        pc = torch.where(fwd_b, pr, pl)
        gc = torch.where(fwd_b, gr, gl)
        alive = torch.ones(n, dtype=torch.bool)
        logw = torch.full((n,), -math.inf, dtype=x.dtype)
        rho = torch.zeros_like(pc)
        sx, se, sg = xc, pe, gc
        count = torch.zeros(n, dtype=torch.long)
        ck_p: list = [None] * depth
        ck_r: list = [None] * depth
        for leaf in range(n_leaves):
            pc = torch.addcmul(pc, half, gc, value=-1.0)
            xc = torch.addcmul(xc, step, pc)
            gc = xc @ prec
            ec = 0.5 * torch.linalg.vecdot(gc, xc)
            pc = torch.addcmul(pc, half, gc, value=-1.0)
            delta = ec + 0.5 * torch.linalg.vecdot(pc, pc) - h0_
            delta = torch.where(torch.isnan(delta), math.inf, delta)
            count += alive
            acc = acc + torch.where(alive, torch.exp(-delta).clamp_(max=1.0), 0.0)
            new_logw = torch.logaddexp(logw, -delta)
            take = alive & (u[leaf + 1] < torch.exp(-delta - new_logw))
            logw = torch.where(alive, new_logw, logw)
            tb = take.unsqueeze(1)
            sx = torch.where(tb, xc, sx)
            sg = torch.where(tb, gc, sg)
            se = torch.where(take, ec, se)
            rho = rho + torch.where(alive.unsqueeze(1), pc, 0.0)
            stop = alive & (delta > 1000.0)
            div = div | stop
            if depth > 0:
                lo, hi = checkpoint_range(leaf)
                if leaf % 2 == 0:
                    ck_p[hi], ck_r[hi] = pc, rho
                else:
                    for i in range(lo, hi + 1):
                        span = rho - ck_r[i] + ck_p[i]
                        stop = stop | (torch.linalg.vecdot(ck_p[i], span) <= 0) | (
                            torch.linalg.vecdot(pc, span) <= 0)
            alive = alive & ~stop
        right = (alive & fwd).unsqueeze(1)
        left = (alive & ~fwd).unsqueeze(1)
        xr, pr, gr = (torch.where(right, xc, xr), torch.where(right, pc, pr),
                      torch.where(right, gc, gr))
        xl, pl, gl = (torch.where(left, xc, xl), torch.where(left, pc, pl),
                      torch.where(left, gc, gl))
        take = alive & (u[n_leaves + 1] < torch.exp(logw - logw_t))
        tb = take.unsqueeze(1)
        px, pg, pe = torch.where(tb, sx, px), torch.where(tb, sg, pg), torch.where(take, se, pe)
        logw_t = torch.where(alive, torch.logaddexp(logw_t, logw), logw_t)
        rho_t = torch.where(alive.unsqueeze(1), rho_t + rho, rho_t)
        dep = dep + alive
        nlf = nlf + count
        still = alive & (torch.linalg.vecdot(pl, rho_t) > 0) & (
            torch.linalg.vecdot(pr, rho_t) > 0)
        t = [xl, pl, gl, xr, pr, gr, rho_t, logw_t, px, pe, pg, h0_, eps_, nlf, dep, acc, div]
        if idx is None:
            tree, active = t, still
        else:
            tree = [v.index_copy(0, idx, s) for v, s in zip(tree, t, strict=True)]
            active = torch.zeros(b, dtype=torch.bool).index_copy_(0, idx, still)
    # Per-chain acceptance statistic (what step-size adaptation reads), as NUTS reports it.
    _accept = tree[15] / tree[13].clamp(min=1)
    return tree[8], tree[9], tree[10], tree[13]


def check_identical(sampler: NUTS, energy: Gaussian, x0: torch.Tensor) -> None:
    """Both implementations must build the same trees from the same seed."""
    state = sampler.init(energy, x0)
    x, e, g = state.x, state.energy, state.grad
    gen_a, gen_b = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):
        state, info = sampler.step(energy, state, gen_a)
        x, e, g, n_grad = floor_transition(x, e, g, state.step_size, energy.prec,
                                           sampler.max_tree_depth, gen_b)
        if not (torch.equal(state.x, x) and torch.equal(info["n_grad"], n_grad)):
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
            x, e, gr, _n = floor_transition(x, e, gr, eps, prec, sampler.max_tree_depth, g)
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
