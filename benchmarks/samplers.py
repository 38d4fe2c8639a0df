"""Speed of the built-in torch-backend samplers against bare-PyTorch floors.

Each case pairs a sampler run (``sampler.sample(...)``, the public API) with a floor: the same
mathematics written by hand in bare PyTorch (analytic gradient, in-place updates, noise drawn
with ``torch.randn`` into a preallocated buffer). Both start from the same points with the
same seed. Runs are interleaved in one process after a warm-up, with torch pinned to one
thread, and the script reports the median and range of the per-repeat ratio sampler/floor.

Run ``python benchmarks/samplers.py`` (full sizes) or ``python benchmarks/samplers.py --quick``
(a smoke run at small sizes). glibc's heap trimming is switched off for both sides unless
``--system-malloc`` is given (see :func:`pin_heap`).
"""

from __future__ import annotations

import argparse
import ctypes
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numba  # noqa: F401  - import before pinning threads: numba can reset OpenMP's count
import torch

import ebmcore


@dataclass
class Case:
    """One comparison: zero-argument runs that return the final positions.

    ``floor_energy`` is the same floor calling the energy's own ``grad`` /
    ``energy_and_grad`` instead of the hand-written gradient: ``sampler / floor_energy``
    isolates the sampler's own overhead from that of the energy's implementation.
    """

    name: str
    sampler: Callable[[], torch.Tensor]
    floor: Callable[[], torch.Tensor]
    floor_energy: Callable[[], torch.Tensor] | None = None


# -- energies -------------------------------------------------------------------------------

def double_well(dim: int = 2) -> ebmcore.Energy:
    """The registry's double well (barrier 2, centre 1)."""
    return ebmcore.create("energy", "double_well", dim=dim, barrier=2.0, center=1.0)


def dense_gaussian(dim: int, seed: int = 0) -> tuple[ebmcore.Energy, torch.Tensor, torch.Tensor]:
    """A Gaussian with a dense, moderately conditioned covariance; returns (energy, mean, P)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
    cov = a @ a.T + 0.5 * torch.eye(dim, dtype=torch.float64)
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    energy = ebmcore.create("energy", "gaussian", mean=mean, cov=cov)
    precision = energy.precision.to(torch.float32)
    return energy.to(torch.float32), mean.to(torch.float32), precision


def mlp_energy(dim: int = 2) -> ebmcore.Energy:
    """The registry's MLP energy (autograd gradient), with fixed random weights.

    Without its confining wall: the floor differentiates the bare network by hand.
    """
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG left as it was
        torch.manual_seed(0)
        return ebmcore.create("model", "mlp", dim=dim, hidden=[128, 128],
                              confine=False).requires_grad_(False)


# -- floors ---------------------------------------------------------------------------------

def ula_floor(grad: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, n_steps: int,
              eps: float, seed: int) -> torch.Tensor:
    """Bare ULA: ``x += -eps grad + sqrt(2 eps) xi``."""
    gen = torch.Generator().manual_seed(seed)
    x = x0.clone()
    noise = torch.empty_like(x)
    sd = math.sqrt(2.0 * eps)
    for _ in range(n_steps):
        g = grad(x)
        x.add_(g, alpha=-eps)
        torch.randn(x.shape, generator=gen, out=noise)
        x.add_(noise, alpha=sd)
    return x


def mala_floor(energy_and_grad: Callable, x0: torch.Tensor, n_steps: int, eps: float,
               seed: int) -> torch.Tensor:
    """Bare MALA with cached energy and gradient and a per-chain accept/reject."""
    gen = torch.Generator().manual_seed(seed)
    x = x0.clone()
    e, g = energy_and_grad(x)
    y = torch.empty_like(x)
    xi = torch.empty_like(x)
    u = torch.empty(x.shape[0], dtype=x.dtype)
    sd = math.sqrt(2.0 * eps)
    for _ in range(n_steps):
        torch.add(x, g, alpha=-eps, out=y)
        torch.randn(x.shape, generator=gen, out=xi)
        fwd = torch.linalg.vecdot(xi, xi) * 0.5
        y.add_(xi, alpha=sd)
        e_y, g_y = energy_and_grad(y)
        r = torch.sub(x, y, out=xi).add_(g_y, alpha=eps)
        log_alpha = (e - e_y) + fwd - torch.linalg.vecdot(r, r) / (4.0 * eps)
        acc = torch.rand(u.shape, generator=gen, out=u) < log_alpha.clamp_max(0.0).exp()
        acc_b = acc.unsqueeze(1)
        torch.where(acc_b, y, x, out=x)
        torch.where(acc_b, g_y, g, out=g)
        torch.where(acc, e_y, e, out=e)
    return x


def hmc_floor(energy_and_grad: Callable, grad: Callable, x0: torch.Tensor, n_traj: int,
              eps: float, n_leapfrog: int, seed: int) -> torch.Tensor:
    """Bare HMC (identity mass) with a cached gradient: L gradients per trajectory."""
    return hmc_floor_with(energy_and_grad, grad, x0, n_traj, eps, n_leapfrog,
                          torch.Generator().manual_seed(seed))


def hmc_floor_with(energy_and_grad: Callable, grad: Callable, x0: torch.Tensor, n_traj: int,
                   eps: float, n_leapfrog: int, gen: torch.Generator) -> torch.Tensor:
    """:func:`hmc_floor` drawing from ``gen`` (on ``x0``'s device: GPU floors use it too)."""
    x = x0.clone()
    e, g = energy_and_grad(x)
    p = torch.empty_like(x)
    x1 = torch.empty_like(x)
    u = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for _ in range(n_traj):
        torch.randn(x.shape, generator=gen, out=p)
        h0 = 0.5 * torch.linalg.vecdot(p, p) + e
        x1.copy_(x)
        p.add_(g, alpha=-0.5 * eps)
        for i in range(n_leapfrog):
            x1.add_(p, alpha=eps)
            if i < n_leapfrog - 1:
                p.add_(grad(x1), alpha=-eps)
            else:
                e1, g1 = energy_and_grad(x1)
                p.add_(g1, alpha=-0.5 * eps)
        h1 = 0.5 * torch.linalg.vecdot(p, p) + e1
        acc = torch.rand(u.shape, generator=gen, out=u) < (h0 - h1).clamp_max(0.0).exp()
        acc_b = acc.unsqueeze(1)
        torch.where(acc_b, x1, x, out=x)
        torch.where(acc_b, g1, g, out=g)
        torch.where(acc, e1, e, out=e)
    return x


# -- cases ----------------------------------------------------------------------------------

def _sampler_run(sampler: ebmcore.Sampler, energy: ebmcore.Energy, x0: torch.Tensor,
                 n_steps: int, seed: int) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sampler.sample(energy, x0, n_steps, generator=gen, backend="torch").samples
    return run


def make_cases(quick: bool = False, seed: int = 0) -> list[Case]:
    """Build the benchmark cases (small sizes with ``quick``)."""
    scale = 100 if quick else 1
    n_dw, n_g = 100_000 // scale, 10_000 // scale
    cases = []
    gen = torch.Generator().manual_seed(seed)

    # 1. ULA, 2-D double well, 100,000 chains x 100 steps.
    dw = double_well(2)
    h, c = float(dw.barrier), float(dw.center)
    g_dw = torch.empty(n_dw, 2)

    def dw_grad(x: torch.Tensor) -> torch.Tensor:
        # Into one preallocated buffer: (4h/c^4) u^3 - (4h/c^2) u, as tight as by hand.
        g_dw.copy_(x)
        u = x[:, 0]
        w = u.square().mul_(4 * h / c**4).sub_(4 * h / c**2)
        torch.mul(w, u, out=g_dw[:, 0])
        return g_dw

    x0 = torch.randn(n_dw, 2, generator=gen)
    eps = 1e-2
    cases.append(Case(f"langevin double-well 2-D, {n_dw:,} chains x 100",
                      _sampler_run(ebmcore.create("sampler", "langevin", step_size=eps),
                                   dw, x0, 100, seed),
                      lambda x0=x0: ula_floor(dw_grad, x0, 100, eps, seed),
                      lambda x0=x0: ula_floor(dw.grad, x0, 100, eps, seed)))

    # 2-4. The 100-D dense-covariance Gaussian, 10,000 chains.
    gauss, mean, prec = dense_gaussian(100)

    def g_grad(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) @ prec

    def g_eg(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = x - mean
        g = diff @ prec
        return 0.5 * (diff * g).sum(-1), g

    xg = mean + torch.randn(n_g, 100, generator=gen)
    eps_g = 0.05
    cases.append(Case(f"langevin gaussian 100-D, {n_g:,} chains x 100",
                      _sampler_run(ebmcore.create("sampler", "langevin", step_size=eps_g),
                                   gauss, xg, 100, seed),
                      lambda: ula_floor(g_grad, xg, 100, eps_g, seed),
                      lambda: ula_floor(gauss.grad, xg, 100, eps_g, seed)))
    cases.append(Case(f"mala gaussian 100-D, {n_g:,} chains x 100",
                      _sampler_run(ebmcore.create("sampler", "mala", step_size=eps_g,
                                                  adapt_step_size=False),
                                   gauss, xg, 100, seed),
                      lambda: mala_floor(g_eg, xg, 100, eps_g, seed),
                      lambda: mala_floor(gauss.energy_and_grad, xg, 100, eps_g, seed)))
    eps_h, n_traj = 0.1, 20
    cases.append(Case(f"hmc(L=10) gaussian 100-D, {n_g:,} chains x {n_traj}",
                      _sampler_run(ebmcore.create("sampler", "hmc", step_size=eps_h,
                                                  n_leapfrog=10, adapt_step_size=False),
                                   gauss, xg, n_traj, seed),
                      lambda: hmc_floor(g_eg, g_grad, xg, n_traj, eps_h, 10, seed),
                      lambda: hmc_floor(gauss.energy_and_grad, gauss.grad, xg, n_traj, eps_h,
                                        10, seed)))

    # 5. ULA on an MLP energy (autograd gradients), 10,000 chains x 100 steps.
    mlp = mlp_energy(2)

    def mlp_grad(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(mlp.net(xr).sum(), xr)
        return g

    xm = torch.randn(n_g, 2, generator=gen)
    cases.append(Case(f"langevin mlp(2-128-128-1) 2-D, {n_g:,} chains x 100",
                      _sampler_run(ebmcore.create("sampler", "langevin", step_size=eps),
                                   mlp, xm, 100, seed),
                      lambda: ula_floor(mlp_grad, xm, 100, eps, seed)))
    return cases


def _summary(ratios: list[float]) -> tuple[float, float, float]:
    return statistics.median(ratios), min(ratios), max(ratios)


def run(cases: list[Case], repeats: int, out=sys.stdout) -> list[dict]:
    """Warm up, then time sampler and floor(s) interleaved; print and return the ratios.

    Each repeat times every run by the wall clock and by this process's CPU time (with one
    thread the CPU time is the work done, and it is far less disturbed when other processes
    share the cores); the order reverses between repeats.
    """
    rows = []
    for case in cases:
        runs = {"sampler": case.sampler, "floor": case.floor}
        if case.floor_energy is not None:
            runs["floor_energy"] = case.floor_energy
        for fn in runs.values():  # warm-up
            fn()
        wall: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(repeats):
            for which in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                w0, c0 = time.perf_counter(), time.process_time()
                runs[which]()
                cpu[which].append(time.process_time() - c0)
                wall[which].append(time.perf_counter() - w0)

        def ratio(times: dict[str, list[float]], floor: str) -> tuple[float, float, float]:
            return _summary([a / b for a, b in zip(times["sampler"], times[floor],
                                                    strict=True)])

        w, c = ratio(wall, "floor"), ratio(cpu, "floor")
        row = {"case": case.name, "median": w[0], "min": w[1], "max": w[2],
               "cpu_median": c[0], "cpu_min": c[1], "cpu_max": c[2],
               "sampler_s": statistics.median(wall["sampler"]),
               "floor_s": statistics.median(wall["floor"])}
        line = (f"{case.name:<50} wall {w[0]:5.3f} [{w[1]:.3f}, {w[2]:.3f}]  "
                f"cpu {c[0]:5.3f} [{c[1]:.3f}, {c[2]:.3f}]")
        if "floor_energy" in runs:
            e = ratio(cpu, "floor_energy")
            row.update(energy_cpu_median=e[0], energy_cpu_min=e[1], energy_cpu_max=e[2])
            line += f"  vs energy-floor cpu {e[0]:5.3f} [{e[1]:.3f}, {e[2]:.3f}]"
        else:
            line += " " * 42
        line += f"  sampler {row['sampler_s']:.3f}s floor {row['floor_s']:.3f}s"
        rows.append(row)
        print(line, file=out, flush=True)
    return rows


def pin_heap() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the system.

    Multi-megabyte temporaries are freed and re-allocated every step; by default glibc
    returns such blocks to the system (mmap threshold, heap trimming) and page-faults them
    back on the next allocation. Who pays those faults depends on the exact order of
    allocations and frees, not on the work done: measured here, one of two runs doing the
    same mathematics took ~50,000 minor faults per 30 MALA steps and the other none, a 10-15 %
    difference in either direction. Pinning the heap removes that lottery for both sides.
    Returns whether it applied (glibc only).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)
                    and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's heap trimming on (see pin_heap)")
    args = parser.parse_args(argv)
    pinned = False if args.system_malloc else pin_heap()
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1, torch.get_num_threads()
    repeats = args.repeats or (3 if args.quick else 7)
    print(f"torch {torch.__version__}, 1 thread, {repeats} interleaved repeats; "
          f"ratio = sampler / floor, median [min, max], by wall clock and by CPU time; "
          f"'vs energy-floor': the floor calling the energy's own gradient; "
          f"heap pinned: {pinned}")
    run(make_cases(quick=args.quick), repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
