"""Speed of ``backend="compiled"`` against the eager torch backend on an MLP energy.

The energy is the registry's MLP, 2 -> 128 -> 128 -> 1 with SiLU and no confining wall
(``ebmcore.create("model", "mlp", dim=2, confine=False)``, seeded weights), sampled with
Langevin and with MALA (fixed step size) at 1,000 and 10,000 chains. For each case the
script first times the compiled backend's first call (which compiles its block; the
sampler reports that as ``diagnostics["compile_seconds"]``), then alternates eager and
compiled runs from the same start and seed after a warm-up, torch pinned to one thread,
and reports microseconds per step: the best of the repeats (the least disturbed run on a
shared machine) and the median, with the ratio eager / compiled of each.

``--samplers langevin mala parallel_tempering`` adds parallel tempering (a Langevin base at
temperatures 1, 2, 4 and 8, so four replica rows per chain; swaps every step). Run
``python benchmarks/compiled.py`` (full sizes), ``--quick`` (a smoke run) or
``--device cuda`` (on a GPU, where the blocks use CUDA graphs). The first call in a fresh
process compiles: expect tens of seconds per case on a CPU, less when inductor's on-disk
cache already holds the graph from an earlier run (``--cold-cache`` starts from an empty
one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import numba  # noqa: F401  - import first: numba can reset torch's OpenMP thread count
import torch
from samplers import mlp_energy, pin_heap  # benchmarks/ is on sys.path as a script

import ebmcore

#: The samplers this script can time, with their fixed settings.
CASES: dict[str, dict] = {
    "langevin": {"step_size": 0.01},
    "mala": {"step_size": 0.05, "adapt_step_size": False},
    "parallel_tempering": {"base": "langevin", "temperatures": [1.0, 2.0, 4.0, 8.0],
                           "base_params": {"step_size": 0.01}},
}


@dataclass
class Row:
    """One case's measurements."""

    sampler: str
    chains: int
    steps: int
    first_call_s: float
    compile_s: float
    eager_us: list[float]
    compiled_us: list[float]

    def line(self) -> str:
        """A table row: best and median per step, and their ratios."""
        e_best, c_best = min(self.eager_us), min(self.compiled_us)
        e_med, c_med = statistics.median(self.eager_us), statistics.median(self.compiled_us)
        return (f"| {self.sampler} | {self.chains:,} | {e_best:,.0f} | {c_best:,.0f} | "
                f"{e_best / c_best:.2f}x | {e_med:,.0f} | {c_med:,.0f} | "
                f"{e_med / c_med:.2f}x | {self.compile_s:.1f} |")


def time_case(name: str, params: dict, chains: int, steps: int, repeats: int,
              device: str = "cpu") -> Row:
    """Time one sampler at one chain count: first call, then interleaved repeats."""
    energy = mlp_energy(2).to(device)
    sampler = ebmcore.create("sampler", name, **params)
    x0 = torch.randn(chains, 2, generator=torch.Generator().manual_seed(0)).to(device)

    def run(backend: str) -> tuple[float, ebmcore.SampleResult]:
        started = time.perf_counter()
        result = sampler.sample(energy, x0, steps, backend=backend,
                                generator=torch.Generator(device).manual_seed(1))
        if device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        assert torch.get_num_threads() == 1, torch.get_num_threads()
        assert result.diagnostics["backend"] == backend, result.diagnostics["backend"]
        return seconds, result

    first, result = run("compiled")
    compile_s = result.diagnostics["compile_seconds"]
    run("torch")  # warm-up of the eager path (allocator, autograd)
    eager, compiled = [], []
    for _ in range(repeats):
        eager.append(run("torch")[0] / steps * 1e6)
        compiled.append(run("compiled")[0] / steps * 1e6)
    return Row(name, chains, steps, first, compile_s, eager, compiled)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument("--chains", type=int, nargs="*", default=None,
                        help="chain counts (default 1000 10000)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CUDA graphs there)")
    parser.add_argument("--samplers", nargs="+", default=["langevin", "mala"],
                        choices=sorted(CASES), help="samplers to time (default langevin mala)")
    parser.add_argument("--cold-cache", action="store_true",
                        help="compile into an empty inductor cache (the first-call cost of "
                             "a fresh machine; by default earlier runs' graphs are reused)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's heap trimming on (see samplers.pin_heap)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ebmcore-inductor-") as cache:
        if args.cold_cache:  # read when inductor first compiles, so setting it here suffices
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    """Run the cases :func:`main` parsed and print the table."""
    pinned = False if args.system_malloc else pin_heap()
    torch.set_num_threads(1)
    assert torch.get_num_threads() == 1, torch.get_num_threads()
    repeats = args.repeats or (2 if args.quick else 7)
    chain_counts = args.chains or ([200] if args.quick else [1000, 10000])
    print(f"torch {torch.__version__}, {args.device}, 1 thread, {repeats} interleaved "
          f"repeats, heap pinned: {pinned}; µs per step, eager torch backend vs compiled "
          f"(blocks of 10 steps)")
    print("| sampler | chains | eager best | compiled best | speed-up | eager median | "
          "compiled median | speed-up | compile s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for chains in chain_counts:
        steps = 100 if chains <= 2000 else 30
        for name in args.samplers:
            print(time_case(name, CASES[name], chains, steps, repeats, args.device).line(),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
