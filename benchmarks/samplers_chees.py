"""ChEES-HMC and MEADS against NUTS and HMC: ESS per second and per 1,000 gradients.

Targets (``benchmarks/posterior_targets.py``):

- ``gaussian_100``: the Inference Gym's 100-D ill-conditioned Gaussian (eigenvalues
  ``1 / Gamma(0.5)``, randomly rotated; condition number 1.3e5), with a closed-form gradient;
- ``eight_schools_nc``: eight schools, non-centred (10-D, no funnel), autograd gradient.

Each sampler runs with its defaults (diagonal mass adaptation; ``hmc`` with 10 leapfrog steps;
``chees`` also with ``adapt_mass="dense"``; ``meads`` with 4 folds) on the same over-dispersed
starts, with ``--warmup`` adapting steps and ``--draws`` kept ones, torch on one thread. The
samplers run interleaved, ``--reps`` times each, so that a busy machine slows them alike; the
table gives the median seconds. Columns: the smallest bulk ESS over the coordinates (all chains
pooled, :func:`ebmcore.diagnostics.ess_bulk`), the largest R-hat, the largest ``|z|`` of the
posterior means against the reference (``z = (mean - ref) / sqrt(mcse^2 + ref_se^2)``),
gradient evaluations per chain (warm-up + sampling), ESS per second of the whole run and ESS
per 1,000 gradient evaluations of the sampling phase (all chains).

Run: ``python benchmarks/samplers_chees.py [--chains 32] [--warmup 1000] [--draws 1000]
[--reps 1] [--targets gaussian_100 eight_schools_nc] [--samplers chees nuts hmc meads]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numba  # noqa: F401  (imported first: it can reset torch's OpenMP thread count)
import torch

import ebmcore
from ebmcore import diagnostics
from ebmcore.energy import Energy
from ebmcore.testing.sampler_checks import GaussianTarget

sys.path.insert(0, str(Path(__file__).resolve().parent))
import posterior_targets as targets  # noqa: E402

SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "chees": ("chees", {}),
    "chees_dense": ("chees", {"adapt_mass": "dense"}),
    "nuts": ("nuts", {}),
    "hmc": ("hmc", {}),
    "meads": ("meads", {}),
}


def energy_for(name: str, dtype: torch.dtype) -> tuple[Energy, targets.Target]:
    """The target's energy: closed-form gradient for the Gaussian, autograd otherwise."""
    target = targets.make_target(name, dtype)
    if name == "gaussian_100":
        eigenvalues, q = targets.gaussian_eigen(target.dim)
        cov = torch.as_tensor((q * eigenvalues) @ q.T, dtype=torch.float64)
        return GaussianTarget(torch.zeros(target.dim, dtype=torch.float64),
                              0.5 * (cov + cov.T)), target
    return targets.PosteriorEnergy(target), target


def starts(target: targets.Target, n_chains: int, dtype: torch.dtype) -> torch.Tensor:
    """Over-dispersed starts: the reference means plus twice the reference scales."""
    gen = torch.Generator().manual_seed(2021)
    z = torch.randn((n_chains, target.dim), generator=gen, dtype=torch.float64)
    mean = torch.as_tensor(target.ref_mean, dtype=torch.float64)
    sd = torch.as_tensor(target.ref_sd, dtype=torch.float64)
    if target.name == "eight_schools_nc":  # the references are of (mu, log tau, theta)
        mean, sd = torch.zeros(target.dim, dtype=torch.float64), torch.ones(target.dim)
    return (mean + 2.0 * sd * z).to(dtype)


def run_one(kind: str, energy: Energy, target: targets.Target, x0: torch.Tensor,
            args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Sample once; return the measures of the table."""
    name, kwargs = SAMPLERS[kind]
    sampler = ebmcore.create("sampler", name, **kwargs)
    started = time.perf_counter()
    result = sampler.sample(energy, x0, args.draws, burn_in=args.warmup, backend="torch",
                            return_trajectory=True,
                            generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - started
    d = result.diagnostics
    draws = diagnostics.from_trajectory(result.trajectory).double()
    values = target.constrain(draws.reshape(-1, target.dim)).reshape(*draws.shape[:2], -1)
    ess = float(diagnostics.ess_bulk(draws).min())
    mcse = diagnostics.mcse_mean(values)
    ref = torch.as_tensor(target.ref_mean, dtype=torch.float64)
    ref_se = torch.as_tensor(target.ref_mean_se, dtype=torch.float64)
    z = (values.mean((0, 1)) - ref) / (mcse ** 2 + ref_se ** 2).sqrt()
    warm = int(d["n_grad_warmup"].sum())
    kept = int(d["n_grad_sampling"].sum())
    n = x0.shape[0]
    out = {"seconds": seconds, "ess": ess, "rhat": float(diagnostics.rhat(draws).max()),
           "z": float(z.abs().max()), "grads_per_chain": (warm + kept) / n,
           "ess_per_1k_grad": 1000.0 * ess / kept,
           "accept": float(d["acceptance"].mean()),
           "divergences": int(d["divergences"].sum()) if "divergences" in d else 0}
    if "trajectory_length" in d:
        out["trajectory_length"] = float(d["trajectory_length"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--float32", action="store_true", help="float32 chains (else 64)")
    parser.add_argument("--targets", nargs="+", default=["gaussian_100", "eight_schools_nc"])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS),
                        choices=list(SAMPLERS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dtype = torch.float32 if args.float32 else torch.float64
    print(f"# {args.chains} chains, {args.warmup} warm-up + {args.draws} draws, {dtype}, "
          f"torch {torch.__version__}, 1 thread, {args.reps} rep(s), interleaved")
    header = (f"{'target':17} {'sampler':12} {'sec':>7} {'minESS':>8} {'Rhat':>6} {'|z|':>5} "
              f"{'grad/ch':>8} {'ESS/s':>8} {'ESS/1kg':>8} {'acc':>5} {'div':>4} {'T':>6}")
    print(header)
    for name in args.targets:
        energy, target = energy_for(name, dtype)
        x0 = starts(target, args.chains, dtype)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in args.samplers}
        for rep in range(args.reps):
            for kind in args.samplers:
                runs[kind].append(run_one(kind, energy, target, x0, args, seed=rep))
        for kind, results in runs.items():
            r = results[0]
            sec = statistics.median(x["seconds"] for x in results)
            length = f"{r['trajectory_length']:6.2f}" if "trajectory_length" in r else "     -"
            print(f"{name:17} {kind:12} {sec:7.1f} {r['ess']:8.0f} {r['rhat']:6.3f} "
                  f"{r['z']:5.1f} {r['grads_per_chain']:8.0f} {r['ess'] / sec:8.1f} "
                  f"{r['ess_per_1k_grad']:8.2f} {r['accept']:5.2f} {r['divergences']:4d} "
                  f"{length}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
