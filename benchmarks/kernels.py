"""Speed of the fused numba kernels and of ``backend="auto"`` against bare-PyTorch floors.

Cases (each a ratio ``time / floor`` measured in one process, interleaved, after warm-up):

- 8-component Gaussian mixture, 2-D, 100,000 chains x 100 Langevin steps: the numba
  kernel against a hand-written vectorised torch loop (goal <= 0.4).
- 2-D double well, 100,000 chains x 100 Langevin steps: ``Langevin.sample(backend="auto")``
  against the floor (goal <= 1.10).

torch is pinned to one thread after numba's thread pool is started (starting it resets the
OpenMP thread count torch shares), and the script asserts it after every timed run. The numba
kernels run with 1 thread (the fair comparison with one torch thread) and with every numba
thread (reported too).

glibc's heap trimming is switched off for every run unless ``--system-malloc`` is given (the
same ``pin_heap`` as ``benchmarks/samplers.py``: who pays the page faults of re-allocated
temporaries otherwise depends on allocation order, not on the work done).

``--sweep`` (after the headline) or ``--sweep-only`` times the torch backend against the
fused one (numba on one thread; ``--device cuda``: the cuda kernel) for Langevin, MALA and
HMC over a grid of energies (double well, 8-component mixture, dense Gaussians up to 100-D),
dimensions, chain counts and ``--dtype float32 float64``, and reports how far ``auto``'s pick
(``Sampler.choose_backend``: the hand-fitted rule ``ebmcore_samplers.kernels.dispatch.
auto_backend`` encodes on short runs, timed trials on long ones) is from the faster backend.
``--held-out`` sweeps a second grid (other energies, dimensions and chain counts) to check
the rule on cases it was not fitted to; ``--new-grid`` a third that neither has, at
50,000-100,000 chains and 100 steps (long enough that ``auto`` times the backends): faces
declared by a test plugin (the example plugin's Mueller-Brown and quartic bowl), Rosenbrock
beyond 3-D and mixtures with K != 8. Each row says whether ``auto`` decided by its rule or
by a trial (``auto_how``) and what the trial cost (``trial_s``).

Run ``python benchmarks/kernels.py`` (full sizes, a few minutes on 2 cores),
``python benchmarks/kernels.py --quick`` (smoke sizes), or
``python benchmarks/kernels.py --sweep-only --dtype float32 float64`` (about 8 minutes).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba  # import before pinning torch's threads (see the module docstring)
import torch
from ebmcore_samplers.kernels.dispatch import auto_backend
from ebmcore_samplers.langevin import Langevin
from samplers import pin_heap  # benchmarks/ is on sys.path when this runs as a script

import ebmcore

STEP = 0.01


def langevin_sampler() -> Langevin:
    """The built-in Langevin (it carries the fused backends)."""
    return Langevin(step_size=STEP)


# -- energies and floors -------------------------------------------------------------------

def double_well(dim: int = 2) -> ebmcore.Energy:
    """The registry's double well (barrier 2, centre 1)."""
    return ebmcore.create("energy", "double_well", dim=dim, barrier=2.0, center=1.0)


def mixture(dim: int = 2, k: int = 8) -> ebmcore.Energy:
    """``k`` components of variance 0.3 on a circle of radius 4 (in the first two axes)."""
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    means = torch.zeros(k, dim, dtype=torch.float64)
    means[:, 0] = 4 * torch.cos(angles)
    means[:, 1 % dim] += 4 * torch.sin(angles)
    return ebmcore.create("energy", "gaussian_mixture", means=means, covs=0.3)


def floor_double_well(x0: torch.Tensor, n_steps: int, gen: torch.Generator) -> torch.Tensor:
    """ULA on the double well by hand: analytic gradient, in-place updates, preallocated noise."""
    x = x0.clone()
    g = torch.empty_like(x)
    noise = torch.empty_like(x)
    sd = math.sqrt(2 * STEP)
    h, c = 2.0, 1.0
    for _ in range(n_steps):
        g.copy_(x)
        u = x[:, 0] / c
        g[:, 0] = u.mul(u).sub_(1.0).mul_(u).mul_(4 * h / c)
        x.add_(g, alpha=-STEP)
        torch.randn(x.shape, generator=gen, out=noise)
        x.add_(noise, alpha=sd)
    return x


def floor_mixture(energy: ebmcore.Energy) -> Callable[..., torch.Tensor]:
    """ULA on the mixture by hand: the log-sum-exp gradient vectorised over (B, K, D)."""
    def run(x0: torch.Tensor, n_steps: int, gen: torch.Generator) -> torch.Tensor:
        means = energy.means.to(x0.dtype)
        prec = energy.precision.to(x0.dtype)
        log_coef = energy.log_coef.to(x0.dtype)
        x = x0.clone()
        noise = torch.empty_like(x)
        sd = math.sqrt(2 * STEP)
        for _ in range(n_steps):
            diff = x[:, None, :] - means                                   # (B, K, D)
            pd = torch.einsum("bkd,kde->bke", diff, prec)
            a = log_coef - 0.5 * (diff * pd).sum(-1)                       # (B, K)
            r = torch.softmax(a, dim=1)
            g = (r[:, :, None] * pd).sum(1)
            x.add_(g, alpha=-STEP)
            torch.randn(x.shape, generator=gen, out=noise)
            x.add_(noise, alpha=sd)
        return x

    return run


# -- timing ----------------------------------------------------------------------------------

def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def numba_run(energy: ebmcore.Energy, x0: torch.Tensor, n_steps: int, threads: int,
              seed: int, backend: str = "numba") -> Callable[[], object]:
    """Langevin on ``backend`` with numba on ``threads`` threads (``auto`` uses 1, like the
    one-thread floor, whichever backend it picks)."""
    sampler = langevin_sampler()

    def run() -> object:
        numba.set_num_threads(threads)
        return sampler.sample(energy, x0, n_steps, backend=backend,
                              generator=torch.Generator().manual_seed(seed))
    return run


def interleaved(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Warm every run up once, then time them round-robin ``rounds`` times."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(timed(fn))
            # numba's OpenMP layer shares torch's thread count: a floor on two threads
            # would be no floor (the samplers restore it; this guards the comparison).
            assert torch.get_num_threads() == 1, f"{name} left torch on more threads"
    return times


def ratio_summary(times: dict[str, list[float]], name: str, floor: str) -> dict[str, float]:
    ratios = [a / b for a, b in zip(times[name], times[floor], strict=True)]
    # On a shared machine stalls only add time: the ratio of the best times is reported too.
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "best_over_best": min(times[name]) / min(times[floor]),
            "seconds": statistics.median(times[name])}


def headline(n_chains: int, n_steps: int, rounds: int, dtype: torch.dtype) -> dict[str, object]:
    """The two goals: numba on the mixture and auto on the double well, against floors."""
    seed = 0
    max_threads = numba.config.NUMBA_NUM_THREADS
    out: dict[str, object] = {}

    mix = mixture()
    x_mix = torch.randn(n_chains, 2, generator=torch.Generator().manual_seed(1),
                        dtype=dtype) * 4
    floor = floor_mixture(mix)
    runs = {"floor": lambda: floor(x_mix, n_steps, torch.Generator().manual_seed(seed)),
            "numba_1t": numba_run(mix, x_mix, n_steps, 1, seed)}
    if max_threads > 1:
        runs[f"numba_{max_threads}t"] = numba_run(mix, x_mix, n_steps, max_threads, seed)
    t = interleaved(runs, rounds)
    out["mixture8_langevin"] = {n: ratio_summary(t, n, "floor") for n in runs if n != "floor"}
    out["mixture8_langevin"]["floor_seconds"] = statistics.median(t["floor"])

    dw = double_well()
    x_dw = torch.randn(n_chains, 2, generator=torch.Generator().manual_seed(2), dtype=dtype)
    sampler = langevin_sampler()
    numba.set_num_threads(1)
    chosen = auto_backend("langevin", dw, x_dw, sampler._fused_params()[1])
    runs = {
        "floor": lambda: floor_double_well(x_dw, n_steps, torch.Generator().manual_seed(seed)),
        "auto": numba_run(dw, x_dw, n_steps, 1, seed, backend="auto"),
        "torch": lambda: sampler.sample(dw, x_dw, n_steps, backend="torch",
                                        generator=torch.Generator().manual_seed(seed)),
        "numba_1t": numba_run(dw, x_dw, n_steps, 1, seed),
    }
    if max_threads > 1:
        runs[f"numba_{max_threads}t"] = numba_run(dw, x_dw, n_steps, max_threads, seed)
    numba.set_num_threads(1)
    t = interleaved(runs, rounds)
    out["double_well_langevin"] = {n: ratio_summary(t, n, "floor") for n in runs if n != "floor"}
    out["double_well_langevin"]["floor_seconds"] = statistics.median(t["floor"])
    out["double_well_langevin"]["auto_chose"] = chosen
    return out


def dense_gaussian(dim: int) -> ebmcore.Energy:
    """A full-covariance Gaussian ``Σ = A Aᵀ / D + ½ I`` (seeded ``A``): a dense face."""
    a = torch.randn(dim, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64)
    cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
    return ebmcore.create("energy", "gaussian", mean=torch.zeros(dim, dtype=torch.float64),
                          cov=cov)


#: An energy's name -> its builder (of the dimension) and the dimensions to sweep.
Grid = dict[str, tuple[Callable[[int], ebmcore.Energy], tuple[int, ...]]]

#: The sweep's grid: energy -> dimensions. Mixtures stop at 32-D (8 components of 32 x 32
#: precisions: a 100-D one only repeats the dense Gaussian eight times over).
SWEEP_ENERGIES: Grid = {
    "double_well": (double_well, (2, 10, 32, 100)),
    "mixture8": (mixture, (2, 10, 32)),
    "dense_gaussian": (dense_gaussian, (2, 10, 32, 100)),
}
SWEEP_CHAINS = (100, 1_000, 10_000, 100_000)
#: A second grid the rule was not fitted on (``--held-out``): other energies, dimensions and
#: chain counts.
HELD_OUT_ENERGIES: Grid = {
    "rosenbrock": (lambda d: ebmcore.create("energy", "rosenbrock", dim=d), (3, 20)),
    "mixture4": (functools.partial(mixture, k=4), (5, 20)),
    "dense_gaussian": (dense_gaussian, (5, 20, 50)),
}
HELD_OUT_CHAINS = (300, 3_000, 30_000)


def example_plugin_energy(name: str, dim: int) -> ebmcore.Energy:
    """An energy of the example plugin (``examples/ebmcore-example-plugin``): a face a
    third-party plugin declares, imported from its source tree when it is not installed."""
    try:
        from ebmcore_example_plugin import energies
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[1]
        sys.path.insert(0, str(root / "examples" / "ebmcore-example-plugin" / "src"))
        from ebmcore_example_plugin import energies
    if name == "mueller_brown":
        return energies.MuellerBrown()
    return energies.QuarticBowl(dim=dim)


#: A third grid (``--new-grid``) that neither the sweep nor the held-out grid has.
NEW_ENERGIES: Grid = {
    "mueller_brown": (functools.partial(example_plugin_energy, "mueller_brown"), (2,)),
    "quartic_bowl": (functools.partial(example_plugin_energy, "quartic_bowl"), (6,)),
    "rosenbrock": (lambda d: ebmcore.create("energy", "rosenbrock", dim=d), (5, 10)),
    "mixture4": (functools.partial(mixture, k=4), (2,)),
    "mixture12": (functools.partial(mixture, k=12), (2,)),
    "mixture16": (functools.partial(mixture, k=16), (3,)),
}
NEW_CHAINS = (50_000, 100_000)
#: Steps of every new-grid run: long enough for ``auto`` to time the backends.
NEW_STEPS = 100
SWEEP_METHODS = ("langevin", "mala", "hmc")
#: Gradient evaluations per coordinate each sweep run aims at (sets its number of steps).
SWEEP_WORK = 2_000_000
#: Leapfrog steps of the sweep's HMC.
SWEEP_LEAPFROG = 5
#: ``auto`` may be this much slower than the fastest backend before a case counts as a miss.
AUTO_TOLERANCE = 1.25


def sweep_sampler(method: str) -> ebmcore.Sampler:
    """The registry sampler for a sweep case (fixed step sizes: nothing adapts)."""
    if method == "langevin":
        return langevin_sampler()
    if method == "mala":
        return ebmcore.create("sampler", "mala", step_size=0.05, adapt_step_size=False)
    return ebmcore.create("sampler", "hmc", step_size=0.05, n_leapfrog=SWEEP_LEAPFROG,
                          adapt_step_size=False)


def sweep_steps(method: str, n_chains: int, dim: int) -> int:
    """Steps for a sweep run: about ``SWEEP_WORK`` gradient-coordinates, 5 to 200 steps."""
    per_step = n_chains * dim * (SWEEP_LEAPFROG if method == "hmc" else 1)
    return max(5, min(200, SWEEP_WORK // per_step))


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a device synchronisation, so that a timer sees the whole run."""
    if device.type != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return run


def sweep(rounds: int, dtype: torch.dtype, device: str | torch.device = "cpu",
          methods: tuple[str, ...] = SWEEP_METHODS, energies: tuple[str, ...] | None = None,
          chains: tuple[int, ...] = SWEEP_CHAINS, grid: Grid = SWEEP_ENERGIES,
          steps: int | None = None) -> list[dict[str, object]]:
    """Time torch and the fused backend of ``device`` on every case of the grid.

    Each row gives nanoseconds per chain-step of both backends (median of ``rounds``
    interleaved runs after a warm-up), the backend ``auto`` picks and how much slower than
    the fastest that pick is (``auto_over_best``; a miss above ``AUTO_TOLERANCE``). On the
    CPU the fused backend runs on one numba thread, like the one-thread torch. ``grid``
    maps each energy to its builder and dimensions (``HELD_OUT_ENERGIES`` for the held-out
    check); ``energies`` picks some of them (all by default); ``steps`` fixes every run's
    length (default: :func:`sweep_steps`). ``auto``'s pick is what ``sample`` would run
    (``Sampler.choose_backend``), asked once before the timed runs: for a long run that
    times the backends, and the trial's cost is reported as ``trial_s``.
    """
    device = torch.device(device)
    fused = "numba" if device.type == "cpu" else "cuda"
    rows = []
    numba.set_num_threads(1)
    for name in energies or tuple(grid):
        make, dims = grid[name]
        for dim in dims:
            energy = make(dim).to(device)
            for method in methods:
                sampler = sweep_sampler(method)
                for n_chains in chains:
                    n_steps = steps or sweep_steps(method, n_chains, dim)
                    x0 = torch.randn(n_chains, dim, dtype=dtype,
                                     generator=torch.Generator().manual_seed(3)).to(device)
                    runs = {b: synced(functools.partial(
                        sampler.sample, energy, x0, n_steps, backend=b,
                        generator=torch.Generator(device).manual_seed(0)), device)
                        for b in ("torch", fused)}
                    choice = sampler.choose_backend(energy, x0, n_steps)
                    chosen = choice.backend.name
                    t = interleaved(runs, rounds)
                    ns = {b: 1e9 * statistics.median(v) / (n_chains * n_steps)
                          for b, v in t.items()}
                    rule = auto_backend(method, energy, x0, sampler._fused_params()[1])
                    row = {"energy": name, "method": method, "dtype": str(dtype)[6:],
                           "device": device.type, "dim": dim, "chains": n_chains,
                           "steps": n_steps, "cost": energy.numba_face().cost,
                           "torch_ns": round(ns["torch"], 1), "fused_ns": round(ns[fused], 1),
                           "fused_over_torch": round(ns[fused] / ns["torch"], 3),
                           "auto": chosen, "rule": rule,
                           "auto_how": choice.reason.split(":")[0].split(" ")[0],
                           "trial_s": round(choice.trial_seconds, 3),
                           "auto_over_best": round(ns[chosen] / min(ns.values()), 3),
                           "rule_over_best": round(ns[rule] / min(ns.values()), 3)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    misses = [r for r in rows if r["auto_over_best"] > AUTO_TOLERANCE]
    worst = max(rows, key=lambda r: r["auto_over_best"])
    rule_ok = sum(r["rule_over_best"] <= AUTO_TOLERANCE for r in rows)
    timed = sum(r["auto_how"] == "measured" for r in rows)
    print(f"sweep: {len(rows)} cases ({timed} timed by auto), auto within {AUTO_TOLERANCE}x "
          f"of the fastest on {len(rows) - len(misses)} (the rule alone: {rule_ok}); worst "
          f"{worst['auto_over_best']}x ({worst['energy']} {worst['dim']}-D {worst['method']} "
          f"{worst['chains']} chains)", flush=True)
    for r in misses:
        print(f"  MISS {r['energy']} {r['dim']}-D {r['method']} {r['dtype']} {r['chains']} "
              f"chains: auto={r['auto']} is {r['auto_over_best']}x the fastest", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (10,000 x 20)")
    parser.add_argument("--sweep", action="store_true", help="also run the auto-rule sweep")
    parser.add_argument("--sweep-only", action="store_true",
                        help="run the sweep without the headline cases")
    parser.add_argument("--device", default="cpu",
                        help="device of the sweep (cuda: torch against the cuda backend)")
    parser.add_argument("--methods", nargs="+", choices=SWEEP_METHODS, default=SWEEP_METHODS,
                        help="samplers of the sweep")
    parser.add_argument("--energies", nargs="+", choices=tuple(SWEEP_ENERGIES),
                        default=tuple(SWEEP_ENERGIES), help="energies of the sweep")
    parser.add_argument("--chains", nargs="+", type=int, default=SWEEP_CHAINS,
                        help="chain counts of the sweep")
    parser.add_argument("--held-out", action="store_true",
                        help="sweep the held-out grid (HELD_OUT_ENERGIES, HELD_OUT_CHAINS)")
    parser.add_argument("--new-grid", action="store_true",
                        help="sweep the new grid (NEW_ENERGIES, NEW_CHAINS, NEW_STEPS steps)")
    parser.add_argument("--json", help="write the sweep's rows to this file")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case")
    parser.add_argument("--dtype", nargs="+", choices=["float32", "float64"],
                        default=["float32"],
                        help="dtype(s) of the chains (float32: torch's default)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's heap trimming on (see samplers.pin_heap)")
    args = parser.parse_args(argv)
    pinned = False if args.system_malloc else pin_heap()
    # Start numba's thread pool first: starting it (which numba.set_num_threads does too)
    # sets the OpenMP thread count torch shares, and would undo the pin below.
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1, "torch must run on one thread for a fair floor"
    n_chains, n_steps = (10_000, 20) if args.quick else (100_000, 100)
    dtypes = [getattr(torch, d) for d in args.dtype]
    print(f"torch {torch.__version__} threads={torch.get_num_threads()}; numba "
          f"{numba.__version__} NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}; "
          f"{n_chains} chains x {n_steps} steps, {' '.join(args.dtype)}, {args.rounds} "
          f"rounds; heap pinned: {pinned}", flush=True)
    if not args.sweep_only:
        result = headline(n_chains, n_steps, args.rounds, dtypes[0])
        print(json.dumps(result, indent=2))
        mix = result["mixture8_langevin"]["numba_1t"]
        auto = result["double_well_langevin"]["auto"]
        print(f"mixture8 numba(1 thread)/floor = {mix['median']:.3f} median, "
              f"{mix['best_over_best']:.3f} best/best (goal <= 0.40); double well auto/floor "
              f"= {auto['median']:.3f} median, {auto['best_over_best']:.3f} best/best (goal "
              f"<= 1.10; auto chose {result['double_well_langevin']['auto_chose']})")
    if args.sweep or args.sweep_only:
        rows = []
        steps = None
        if args.held_out:
            energies, chains, grid = None, HELD_OUT_CHAINS, HELD_OUT_ENERGIES
        elif args.new_grid:
            energies, chains, grid, steps = None, NEW_CHAINS, NEW_ENERGIES, NEW_STEPS
        else:
            energies, chains, grid = tuple(args.energies), tuple(args.chains), SWEEP_ENERGIES
        if args.chains != list(SWEEP_CHAINS) and args.chains != SWEEP_CHAINS:
            chains = tuple(args.chains)
        for dtype in dtypes:
            rows += sweep(max(1, args.rounds // 2), dtype, args.device, tuple(args.methods),
                          energies, chains, grid, steps)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
