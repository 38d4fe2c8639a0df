"""Pyro's column of ``benchmarks/posteriors.py``: Pyro's NUTS, in its own process, one thread.

``posteriors.py`` starts this script with the run's settings (``--spec``, JSON) and the
starting points (``--data``, ``.npz``). Pyro samples the very torch log density of
``posterior_targets.py`` through ``NUTS(potential_fn=...)`` (its defaults: step size and
diagonal mass adapted during warm-up, target acceptance 0.8, tree depth 10, no JIT), one chain
after another: ``pyro.infer.MCMC(kernel, num_chains=1, ...)`` per chain, each from its own
starting point and seed, in this one process with ``torch.set_num_threads(1)``. (With
``num_chains > 1`` Pyro would start one process per chain where there are cores for them.)
``seconds`` is the sum over chains of ``MCMC.run`` (warm-up and draws). Gradient evaluations
are counted as calls of the potential (Pyro differentiates each call once), split into
warm-up and draws by MCMC's ``hook_fn``. It writes the draws ``(chains, draws, D)`` and the
counts to ``--out`` (``.npz``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from posterior_targets import make_target


def run_chain(log_prob, x0: torch.Tensor, warmup: int, draws: int,
              seed: int) -> dict[str, float | np.ndarray]:
    """One Pyro NUTS chain from ``x0``; its draws, time, gradient counts and diagnostics."""
    import pyro
    from pyro.infer import MCMC, NUTS

    calls = [0]
    warm_calls = [0]

    def potential(params: dict[str, torch.Tensor]) -> torch.Tensor:
        calls[0] += 1
        return -log_prob(params["u"].unsqueeze(0)).squeeze(0)

    def hook(_kernel, _samples, stage: str, _i: int) -> None:
        if stage.lower().startswith("warm"):
            warm_calls[0] = calls[0]

    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(potential_fn=potential), num_samples=draws, warmup_steps=warmup,
                initial_params={"u": x0.clone()}, num_chains=1, hook_fn=hook,
                disable_progbar=True)
    start = time.perf_counter()
    mcmc.run()
    seconds = time.perf_counter() - start
    diagnostics = mcmc.diagnostics()
    divergences = sum(len(v) for v in diagnostics["divergences"].values())
    acceptance = float(np.mean(list(diagnostics["acceptance rate"].values())))
    return {"draws": mcmc.get_samples()["u"].detach().numpy(), "seconds": seconds,
            "n_grad_warmup": warm_calls[0], "n_grad_sampling": calls[0] - warm_calls[0],
            "divergences": divergences, "acceptance": acceptance}


def main(argv: list[str] | None = None) -> int:
    """Run Pyro's NUTS on one target, chain after chain; write the draws and counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="settings (JSON)")
    parser.add_argument("--data", type=Path, required=True, help="x0 (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="results (.npz)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = json.loads(args.spec.read_text())
    target = make_target(spec["target"], torch.float32)
    with np.load(args.data) as npz:
        x0 = torch.as_tensor(npz["x0"], dtype=torch.float32)
    chains = [run_chain(target.log_prob, x0[c], int(spec["warmup"]), int(spec["draws"]),
                        int(spec["seed"]) + c) for c in range(x0.shape[0])]
    np.savez(args.out, draws=np.stack([c["draws"] for c in chains]),
             **{k: np.array([c[k] for c in chains])
                for k in ("n_grad_warmup", "n_grad_sampling", "divergences", "acceptance")})
    info = {"seconds": sum(c["seconds"] for c in chains),
            "versions": f"pyro-ppl {metadata.version('pyro-ppl')}, torch {torch.__version__}"}
    print("POSTERIORS " + json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
