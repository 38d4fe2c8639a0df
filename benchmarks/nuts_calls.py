"""What a NUTS leaf costs, and how many leaves a run waits for: eager, compiled, traced; lockstep
against asynchronous chains.

Two tables, one process, one thread:

1. **Per energy-and-gradient call** on Neal's funnel (10-D) and the 100-day stochastic
   volatility model (103-D), for a few chain counts: the eager call, the ``torch.compile``
   block (``CompiledGradient(traced=False)``: dynamo's guards at every call) and the traced
   graph NUTS uses (``CompiledGradient``: :mod:`ebmcore_samplers.compiled.traced`). Median
   milliseconds over ``--reps`` repeats of ``--calls`` calls, after warm-up calls, the three
   interleaved.
2. **Lockstep against asynchronous chains** (``nuts(compiled=True)`` against
   ``nuts(compiled=True, asynchronous=True)``) on the funnel, ``--chains`` chains,
   ``--warmup`` + ``--draws``: seconds (compiling excluded), batched energy calls, gradients,
   and calls per chain-transition. Each lockstep transition waits for the deepest tree in the
   batch; an asynchronous chain starts its next transition as soon as its tree ends, so a
   run waits only for its busiest chain.

Run: ``python benchmarks/nuts_calls.py [--reps 3] [--calls 300] [--chains 256]
[--warmup 300] [--draws 300]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba  # noqa: F401  (imported first: it can reset torch's OpenMP thread count)
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ebmcore_samplers.compiled.leapfrog import CompiledGradient  # noqa: E402
from posterior_targets import make_target  # noqa: E402
from posteriors import PosteriorEnergy  # noqa: E402

import ebmcore  # noqa: E402


class CountingEnergy(ebmcore.Energy):
    """Count the batched calls and rows of ``energy_and_grad`` (eager runs only)."""

    def __init__(self, inner: ebmcore.Energy) -> None:
        super().__init__()
        self.inner = inner
        self.event_shape = inner.event_shape
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.inner.energy_and_grad(x)


#: Batched calls of CompiledGradient (the compiled leaves bypass the energy's own method).
CALLS = {"compiled": 0}
_compiled_call = CompiledGradient.__call__


def _counted_call(self: CompiledGradient, energy: ebmcore.Energy, z: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    CALLS["compiled"] += 1
    return _compiled_call(self, energy, z)


CompiledGradient.__call__ = _counted_call  # type: ignore[method-assign]


def per_call(target: str, chains: int, calls: int, reps: int) -> dict[str, float]:
    """Median ms per call: eager, torch.compile's block, the traced graph."""
    energy = PosteriorEnergy(make_target(target))
    z = torch.randn(chains, energy.event_shape[0], generator=torch.Generator().manual_seed(0))
    ways = {"eager": lambda q: energy.energy_and_grad(q),
            "compiled": (lambda c: lambda q: c(energy, q))(CompiledGradient(energy, z, False)),
            "traced": (lambda c: lambda q: c(energy, q))(CompiledGradient(energy, z))}
    times: dict[str, list[float]] = {k: [] for k in ways}
    for way in ways.values():
        for _ in range(20):
            way(z)
    for _ in range(reps):
        for name, way in ways.items():
            start = time.perf_counter()
            for _ in range(calls):
                way(z)
            times[name].append((time.perf_counter() - start) / calls * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def lockstep_vs_async(chains: int, warmup: int, draws: int) -> list[str]:
    """One run each from the same starts and seed; the table's rows."""
    target = make_target("funnel")
    x0 = 4.0 * torch.rand(chains, target.dim, generator=torch.Generator().manual_seed(1)) - 2.0
    rows = []
    for asynchronous in (False, True):
        energy = CountingEnergy(PosteriorEnergy(target))
        sampler = ebmcore.create("sampler", "nuts", compiled=True, asynchronous=asynchronous)
        CALLS["compiled"] = 0
        start = time.perf_counter()
        result = sampler.sample(energy, x0, n_steps=draws, burn_in=warmup,
                                generator=torch.Generator().manual_seed(2))
        seconds = time.perf_counter() - start
        d = result.diagnostics
        seconds -= float(d.get("compile_seconds") or 0.0)
        grads = int(d["n_grad_warmup"].sum() + d["n_grad_sampling"].sum())
        calls = CALLS["compiled"] + energy.calls
        per = calls / (warmup + draws)
        rows.append(f"| {'asynchronous' if asynchronous else 'lockstep'} | {d['backend']} | "
                    f"{seconds:.1f} | {calls:,} | {grads:,} | {per:.1f} | "
                    f"{grads / chains / (warmup + draws):.1f} |")
    return rows


def main() -> None:
    """Print both tables (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| energy | chains | eager ms | torch.compile ms | traced ms |\n"
          "|---|---:|---:|---:|---:|")
    for target, counts in (("funnel", (16, 256)), ("sv_sp500_small", (8, 64))):
        for chains in counts:
            t = per_call(target, chains, args.calls, args.reps)
            print(f"| {target} | {chains} | {t['eager']:.3f} | {t['compiled']:.3f} | "
                  f"{t['traced']:.3f} |", flush=True)
    print(f"\nfunnel, {args.chains} chains, {args.warmup} + {args.draws}, nuts(compiled=True)")
    print("| NUTS | backend | seconds | energy calls | gradients | calls per iteration | "
          "gradients per chain-iteration |\n|---|---|---:|---:|---:|---:|---:|")
    for row in lockstep_vs_async(args.chains, args.warmup, args.draws):
        print(row, flush=True)


if __name__ == "__main__":
    main()
