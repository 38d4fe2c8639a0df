"""Closed-form gradients of the built-in energies against autograd on the same energy.

For each energy at N points (2-D unless the energy needs more) this times ``energy.grad(x)``
and ``energy.energy_and_grad(x)`` against the autograd path of the base class
(``Energy.energy_and_grad``: detach, ``requires_grad``, forward, backward), interleaving the
two in every repetition after a warm-up, with torch pinned to one thread. It prints median
times and the median ratio closed/autograd with its range over repetitions (below 1 means
the closed form is faster). ``callable`` is left out: its gradient is autograd.

Run: ``python benchmarks/energy_grad.py [--n 100000] [--reps 15] [--dtype float32]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba  # noqa: F401  (imported first: it can reset torch's OpenMP thread count)
import torch

import ebmcore
from ebmcore.energy import Energy

MEANS_8 = [[4.0 * (i % 4) - 6.0, 4.0 * (i // 4) - 2.0] for i in range(8)]


def cases() -> list[tuple[str, Energy]]:
    """The energies to time, with their labels."""
    e = ebmcore.create
    return [
        ("gaussian (full cov)", e("energy", "gaussian", mean=[0.0, 1.0],
                                  cov=[[1.0, 0.5], [0.5, 2.0]])),
        ("gaussian (diag)", e("energy", "gaussian", mean=[0.0, 1.0], diag=[1.0, 2.0])),
        ("gaussian_mixture K=8", e("energy", "gaussian_mixture", means=MEANS_8, covs=0.5)),
        ("gaussian_mixture K=8 full", e("energy", "gaussian_mixture", means=MEANS_8,
                                        covs=[[[0.5, 0.1], [0.1, 0.4]]] * 8)),
        ("double_well", e("energy", "double_well")),
        ("harmonic", e("energy", "harmonic")),
        ("rastrigin", e("energy", "rastrigin")),
        ("rosenbrock", e("energy", "rosenbrock")),
        ("ackley", e("energy", "ackley")),
        ("himmelblau", e("energy", "himmelblau")),
        ("styblinski_tang", e("energy", "styblinski_tang")),
        ("banana", e("energy", "banana")),
        ("funnel (2-D)", e("energy", "funnel", dim=2)),
        ("ring", e("energy", "ring")),
        ("sum(gaussian, ring)", e("energy", "sum", energies=[
            e("energy", "gaussian", mean=[0.0, 0.0]), e("energy", "ring")])),
        ("tempered(double_well)", e("energy", "tempered", energy=e("energy", "double_well"),
                                    temperature=2.0)),
    ]


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="points per call")
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()

    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1, torch.get_num_threads()
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.n} points, {args.dtype}, 1 thread, "
          f"median of {args.reps} interleaved repetitions after {args.warmup} warm-up")
    header = (f"{'energy':28s} {'grad ms':>8s} {'autograd ms':>11s} {'grad ratio':>20s} "
              f"{'e&g ms':>8s} {'e&g ratio':>20s}")
    print(header)
    print("-" * len(header))
    for label, energy in cases():
        energy = energy.to(dtype)
        x = torch.randn(args.n, *energy.event_shape, generator=gen, dtype=dtype)
        fns = {
            "grad": lambda energy=energy, x=x: energy.grad(x),
            "eg": lambda energy=energy, x=x: energy.energy_and_grad(x),
            "auto": lambda energy=energy, x=x: Energy.energy_and_grad(energy, x),
        }
        # Same mathematics: the closed form must match autograd before it is timed.
        torch.testing.assert_close(fns["grad"](), fns["auto"]()[1], rtol=1e-4, atol=1e-3)
        for _ in range(args.warmup):
            for fn in fns.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.reps):
            for key, fn in fns.items():
                times[key].append(_time(fn))
        assert torch.get_num_threads() == 1
        r_grad = [g / a for g, a in zip(times["grad"], times["auto"], strict=True)]
        r_eg = [g / a for g, a in zip(times["eg"], times["auto"], strict=True)]

        def fmt(r: list[float]) -> str:
            return f"{statistics.median(r):.2f} [{min(r):.2f}-{max(r):.2f}]"

        print(f"{label:28s} {1e3 * statistics.median(times['grad']):8.2f} "
              f"{1e3 * statistics.median(times['auto']):11.2f} {fmt(r_grad):>20s} "
              f"{1e3 * statistics.median(times['eg']):8.2f} {fmt(r_eg):>20s}")


if __name__ == "__main__":
    main()
