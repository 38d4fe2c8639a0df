"""NUTS against a bare-PyTorch floor that builds the same lockstep trees by hand, and
(``--vs-hmc``) against HMC per leapfrog step on small models.

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

On the CPU, NUTS does its per-leaf bookkeeping in numba (``ebmcore_samplers._nuts_numba``)
from the same random numbers, so the check compares trees (depths, gradient counts,
divergences: equal) and states (equal to float rounding).

``--vs-hmc`` times, interleaved in one process on one thread, 16 chains (``--chains``) of
NUTS, of NUTS with the torch bookkeeping (the reference, ``ref``) and of HMC with as many
leapfrog steps as NUTS's mean tree size, at NUTS's adapted step size, on a 2-D banana, a
10-D correlated Gaussian and a 100-D Gaussian with scales 0.1 to 10 (with its exact diagonal
mass), each with a closed-form and an autograd gradient. It prints milliseconds per batched
leapfrog step (all chains together), the ratios NUTS / HMC with their range over
repetitions, and the fraction of gradients spent on chains whose trees had already stopped.

``--funnel`` runs NUTS with its default adaptation on Neal's funnel (10-D, float64, 16
chains, 1,000 warm-up, 1,000 draws) and BlackJAX 1.7.1's NUTS with ``window_adaptation``
(per chain, ``vmap``) in a child process with one XLA thread, and prints the mean acceptance
statistic of the draws, the divergences, the adapted step sizes and the ``v`` moments.

Run: ``python benchmarks/samplers_nuts.py [--reps 15] [--quick]``,
``python benchmarks/samplers_nuts.py --vs-hmc [--reps 9] [--k 20] [--chains 16]`` or
``python benchmarks/samplers_nuts.py --funnel [--seeds 0 1 2] [--no-blackjax]``
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
from typing import Any

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


NAMES = ("x", "energy", "grad", "accept_prob", "tree_depth", "n_grad", "divergent")


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
        ours = (state.x, state.energy, state.grad, info["accept_prob"], info["tree_depth"],
                info["n_grad"], info["divergent"])
        # Same trees (integers equal); the numba bookkeeping rounds differently from torch.
        for a, b, name in zip(ours, (x, e, g, *diag), NAMES, strict=True):
            same = (torch.equal(a, b) if not a.is_floating_point() else
                    torch.allclose(a, b, rtol=1e-4, atol=1e-5))
            if not same:
                raise AssertionError(f"the floor and NUTS built different trees ({name})")


def bench(b: int, dim: int, step_size: float, reps: int, warmup: int, k: int) -> None:
    """Time ``k`` transitions of each, ``reps`` interleaved times; print one row."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    prec = torch.linalg.inv(cov).to(torch.float32)
    energy = Gaussian(prec)
    x0 = torch.randn(b, dim, generator=gen)
    sampler = NUTS(step_size=step_size, adapt_mass=None, adapt_step_size=False)
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


class Counted(Energy):
    """A target with a closed-form (or autograd) gradient that counts its batched calls and
    the rows they evaluate in ``count`` (a list: no ``Module.__setattr__`` per call)."""

    def __init__(self, name: str, dim: int, autograd: bool) -> None:
        super().__init__()
        self.name, self.autograd = name, autograd
        self.event_shape = (dim,)
        self.count = [0, 0]
        if name == "gauss":
            gen = torch.Generator().manual_seed(0)
            a = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
            cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
            self.prec = torch.linalg.inv(cov).float()
        elif name == "scaled":  # axis scales 0.1 .. 10, sampled with the matching mass
            self.var = torch.logspace(-2, 2, dim)
            self.ivar = 1.0 / self.var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "banana":  # x0 ~ N(0, 10^2), x1 | x0 ~ N(0.03 (x0^2 - 100), 1)
            r = x[:, 1] - 0.03 * (x[:, 0] ** 2 - 100.0)
            return x[:, 0] ** 2 / 200.0 + 0.5 * r ** 2
        if self.name == "gauss":
            return 0.5 * torch.linalg.vecdot(x @ self.prec, x)
        return 0.5 * torch.linalg.vecdot(x * self.ivar, x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count = self.count
        count[0] += 1
        count[1] += x.shape[0]
        if self.autograd:
            return super().energy_and_grad(x)
        if self.name == "banana":
            r = x[:, 1] - 0.03 * (x[:, 0] ** 2 - 100.0)
            g = torch.stack([x[:, 0] / 100.0 - 0.06 * x[:, 0] * r, r], 1)
            return x[:, 0] ** 2 / 200.0 + 0.5 * r ** 2, g
        g = x @ self.prec if self.name == "gauss" else x * self.ivar
        return 0.5 * torch.linalg.vecdot(g, x), g

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy_and_grad(x)[1]


def versus_hmc(name: str, dim: int, autograd: bool, b: int, reps: int, k: int,
               clock: Any = time.thread_time) -> None:
    """NUTS against HMC on one target: ms per batched leapfrog step, interleaved; one row.

    The step size is NUTS's adapted one (median over chains), HMC takes as many leapfrog
    steps as NUTS's mean tree size; the 100-D scaled Gaussian uses its exact diagonal mass
    in both. Also NUTS with the torch bookkeeping (the reference) and the gradients each
    spends on chains whose trees had already stopped. ``clock`` is the thread's CPU time by
    default: on a shared machine it leaves out the time the process waits for a core.
    """
    from ebmcore_samplers._nuts_tree import transition
    from ebmcore_samplers.hmc import HMC
    from ebmcore_samplers.metric import Metric

    energy = Counted(name, dim, autograd)
    mass = energy.ivar if name == "scaled" else None
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(b, dim, generator=gen) * (energy.var.sqrt() if mass is not None else 1.0)
    warm = NUTS(mass=mass, adapt_mass=None).sample(energy, x0, 1, burn_in=150, generator=gen)
    eps = float(warm.state.step_size.median())
    nuts = NUTS(step_size=eps, mass=mass, adapt_mass=None, adapt_step_size=False)
    state0 = nuts.init(energy, warm.samples)
    metric = Metric(nuts.mass, dim, torch.float32, torch.device("cpu"))
    _, info = nuts.step(energy, state0, torch.Generator().manual_seed(5))
    n_lf = max(1, round(float(info["n_grad"].double().mean())))
    hmc = HMC(step_size=eps, n_leapfrog=n_lf, mass=mass, adapt_mass=None,
              adapt_step_size=False)

    def run_nuts(seed: int) -> tuple[float, int, int, int]:
        g = torch.Generator().manual_seed(seed)
        state, grads = state0, 0
        energy.count[:] = [0, 0]
        start = clock()
        for _ in range(k):
            state, inf = nuts.step(energy, state, g)
            grads += int(inf["n_grad"].sum())
        return clock() - start, *energy.count, grads

    def run_ref(seed: int) -> tuple[float, int, int, int]:
        g = torch.Generator().manual_seed(seed)
        x, e, gr, grads = state0.x, state0.energy, state0.grad, 0
        energy.count[:] = [0, 0]
        start = clock()
        for _ in range(k):
            x, e, gr, inf = transition(energy, x, e, gr, state0.step_size, metric,
                                       nuts.max_tree_depth, nuts.max_energy_error, g,
                                       bookkeeping="torch")
            grads += int(inf["n_grad"].sum())
        return clock() - start, *energy.count, grads

    def run_hmc(seed: int) -> tuple[float, int, int, int]:
        g = torch.Generator().manual_seed(seed)
        state = hmc.init(energy, state0.x)
        energy.count[:] = [0, 0]
        start = clock()
        for _ in range(k):
            state, _inf = hmc.step(energy, state, g)
        return clock() - start, *energy.count, energy.count[1]

    runs = {"nuts": run_nuts, "ref": run_ref, "hmc": run_hmc}
    for f in runs.values():
        f(0)
    per_lf: dict[str, list[float]] = {key: [] for key in runs}
    waste: dict[str, float] = {}
    for r in range(reps):
        for key, f in runs.items():
            seconds, calls, rows, grads = f(100 + r)
            per_lf[key].append(1e3 * seconds / calls)
            waste[key] = 1.0 - grads / rows
    med = {key: statistics.median(v) for key, v in per_lf.items()}
    best = {key: min(v) for key, v in per_lf.items()}  # the least disturbed repetition
    ratio = [n / h for n, h in zip(per_lf["nuts"], per_lf["hmc"], strict=True)]
    ratio_ref = [n / h for n, h in zip(per_lf["ref"], per_lf["hmc"], strict=True)]
    label = f"{name}-{dim}{' autograd' if autograd else ''}"
    print(f"{label:>20s} {b:6d} {eps:6.3f} {n_lf:5d} {med['hmc']:8.4f} {med['nuts']:8.4f} "
          f"{med['ref']:8.4f} {statistics.median(ratio):6.2f} [{min(ratio):.2f}, "
          f"{max(ratio):.2f}] {best['nuts'] / best['hmc']:6.2f} "
          f"{statistics.median(ratio_ref):6.2f} "
          f"{100 * waste['ref']:6.2f}% {100 * waste['nuts']:6.2f}%")


def main_vs_hmc(args: argparse.Namespace) -> None:
    """The ``--vs-hmc`` table."""
    cases = [c for c in [("banana", 2), ("gauss", 10), ("scaled", 100)]
             if args.targets is None or c[0] in args.targets]
    print(f"torch {torch.__version__}, float32, 1 thread, {args.chains} chains, {args.k} "
          f"transitions per repetition, median of {args.reps} interleaved repetitions, "
          f"{'wall clock' if args.wall else 'thread CPU time'}; "
          f"ms per batched leapfrog step (all chains together). ref = NUTS with the torch "
          f"bookkeeping; best = ratio of the fastest repetitions; wasted = gradients of chains "
          f"whose trees had stopped (ref, now)")
    header = (f"{'target':>20s} {'chains':>6s} {'eps':>6s} {'L':>5s} {'hmc':>8s} {'nuts':>8s} "
              f"{'ref':>8s} {'nuts/hmc':>6s} [range]     {'best':>6s} {'ref/hmc':>6s} "
              f"{'wasted':>7s} "
              f"{'now':>7s}")
    print(header)
    print("-" * len(header))
    for autograd in (False, True):
        for name, dim in cases:
            versus_hmc(name, dim, autograd, args.chains, args.reps, args.k,
                       time.perf_counter if args.wall else time.thread_time)


class Funnel(Energy):
    """Neal's funnel in 10-D: ``v ~ N(0, 3^2)``, ``x_i | v ~ N(0, e^v)`` for nine ``x_i``."""

    event_shape = (10,)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v, x = z[:, 0], z[:, 1:]
        return v ** 2 / 18.0 + 0.5 * torch.exp(-v) * (x ** 2).sum(1) + 4.5 * v

    def energy_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, x = z[:, 0], z[:, 1:]
        ev, sx = torch.exp(-v), (x ** 2).sum(1)
        g = torch.cat([(v / 9.0 - 0.5 * ev * sx + 4.5)[:, None], ev[:, None] * x], 1)
        return v ** 2 / 18.0 + 0.5 * ev * sx + 4.5 * v, g


def funnel_nuts(seed: int, chains: int, warmup: int, draws: int) -> None:
    """NUTS with its default adaptation on the funnel, float64: one row."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(chains, 10, generator=gen, dtype=torch.float64)
    start = time.perf_counter()
    res = NUTS().sample(Funnel(), x0, draws, burn_in=warmup, generator=gen,
                        return_trajectory=True)
    d = res.diagnostics
    eps = d["step_size"]
    v = res.trajectory[..., 0]
    print(f"{'ebmcore':>9s} {seed:4d} {float(d['acceptance'].mean()):7.3f} "
          f"{int(d['divergences'].sum()):6d} {float(eps.min()):8.4f} {float(eps.max()):8.4f} "
          f"{float(v.mean()):6.2f} {float(v.std()):6.2f} {time.perf_counter() - start:7.1f}")


def funnel_blackjax(seed: int, chains: int, warmup: int, draws: int) -> None:
    """BlackJAX's NUTS with ``window_adaptation`` per chain (``vmap``), float64: one row.

    Run in its own process (``--funnel-blackjax``): JAX never shares a process with torch.
    """
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import blackjax

    def logdensity(z: jax.Array) -> jax.Array:
        v, x = z[0], z[1:]
        return -(v ** 2 / 18.0 + 0.5 * jnp.exp(-v) * jnp.sum(x ** 2) + 4.5 * v)

    k0, k1, k2 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x0 = jax.random.normal(k0, (chains, 10))

    def one(x: jax.Array, kw: jax.Array, ks: jax.Array) -> tuple[jax.Array, ...]:
        warm = blackjax.window_adaptation(blackjax.nuts, logdensity,
                                          target_acceptance_rate=0.8)
        (state, params), _ = warm.run(kw, x, num_steps=warmup)
        kernel = blackjax.nuts(logdensity, **params)

        def body(s: Any, k: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
            s, info = kernel.step(k, s)
            return s, (s.position[0], info.acceptance_rate, info.is_divergent)

        _, out = jax.lax.scan(body, state, jax.random.split(ks, draws))
        return (*out, params["step_size"])

    start = time.perf_counter()
    v, acc, div, eps = jax.jit(jax.vmap(one))(x0, jax.random.split(k1, chains),
                                               jax.random.split(k2, chains))
    v.block_until_ready()
    print(f"{'blackjax':>9s} {seed:4d} {float(acc.mean()):7.3f} {int(div.sum()):6d} "
          f"{float(eps.min()):8.4f} {float(eps.max()):8.4f} {float(v.mean()):6.2f} "
          f"{float(v.std()):6.2f} {time.perf_counter() - start:7.1f}")


def main_funnel(args: argparse.Namespace) -> None:
    """The ``--funnel`` table: ebmcore here, BlackJAX in a child process, one thread each."""
    import os
    import subprocess
    import sys

    print(f"Neal's funnel 10-D, float64, {args.chains} chains, {args.burn_in} warm-up and "
          f"{args.draws} draws, target acceptance 0.8, one thread")
    print(f"{'sampler':>9s} {'seed':>4s} {'accept':>7s} {'divs':>6s} {'eps min':>8s} "
          f"{'eps max':>8s} {'v mean':>6s} {'v sd':>6s} {'seconds':>7s}")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
        "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"))
    for seed in args.seeds:
        funnel_nuts(seed, args.chains, args.burn_in, args.draws)
        if not args.no_blackjax:
            subprocess.run([sys.executable, __file__, "--funnel-blackjax", "--seeds", str(seed),
                            "--chains", str(args.chains), "--burn-in", str(args.burn_in),
                            "--draws", str(args.draws)], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions")
    parser.add_argument("--k", type=int, default=5, help="transitions per repetition")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    parser.add_argument("--vs-hmc", action="store_true",
                        help="NUTS against HMC per leapfrog step on small models")
    parser.add_argument("--wall", action="store_true",
                        help="time --vs-hmc by wall clock (default: the thread's CPU time)")
    parser.add_argument("--targets", nargs="+", choices=["banana", "gauss", "scaled"],
                        help="targets (--vs-hmc; default all)")
    parser.add_argument("--chains", type=int, default=16,
                        help="chains (--vs-hmc, --funnel)")
    parser.add_argument("--funnel", action="store_true",
                        help="adapted acceptance and divergences on Neal's funnel, with BlackJAX")
    parser.add_argument("--funnel-blackjax", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-blackjax", action="store_true", help="--funnel without BlackJAX")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (--funnel)")
    parser.add_argument("--burn-in", type=int, default=1000, help="warm-up (--funnel)")
    parser.add_argument("--draws", type=int, default=1000, help="draws (--funnel)")
    args = parser.parse_args()
    if args.funnel_blackjax:
        funnel_blackjax(args.seeds[0], args.chains, args.burn_in, args.draws)
        return
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1, torch.get_num_threads()
    if args.vs_hmc:
        main_vs_hmc(args)
        return
    if args.funnel:
        main_funnel(args)
        return
    cases = [(100, 2, 0.3), (1000, 2, 0.3), (1000, 50, 0.2), (10000, 10, 0.3)]
    if args.quick:
        cases = cases[:2]
    print(f"torch {torch.__version__}, float32, 1 thread, {args.k} transitions per "
          f"repetition, median of {args.reps} interleaved repetitions after {args.warmup} "
          f"warm-up; both sides build the same trees (checked: depths, gradient counts and "
          f"divergences equal, states equal to float rounding)")
    header = (f"{'chains':>7s} {'dim':>4s} {'eps':>6s} {'grads':>8s} {'nuts ms':>10s} "
              f"{'floor ms':>10s} {'ratio':>7s} [range]")
    print(header)
    print("-" * len(header))
    for b, dim, eps in cases:
        bench(b, dim, eps, args.reps, args.warmup, args.k)


if __name__ == "__main__":
    main()
