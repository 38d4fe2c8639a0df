"""Do the samples a training run writes represent its model? R-hat, MMD and time, per sampler.

For each run folder (written by ``ebmcore train`` on a 2-D data set) it redraws the run's
samples exactly as the run does (:func:`ebmcore.runs.trained_model.draw_samples`'s seeds,
starts uniform over the evaluation box, ``sample.n_chains`` chains) with each sampler asked
for, and reports:

- ``max R-hat`` of the traced chains (rank-normalised split R-hat; 1.05 is the limit);
- ``MMD p (data)``: the run's own test, the samples against 2,000 held-out data points;
- ``MMD p (model)``: the samples against 2,000 exact draws of the model's density (a
  512x512 grid over the box): whether the sampler drew what the model says, whatever the
  model's quality;
- ``exact p (data)``: those exact draws against the held-out data: the model's own verdict,
  the best any sampler can reach;
- the sampling seconds and the load average when it ran (the samplers of one folder run one
  after the other in one process, so their ratio holds under load).

Samplers: ``langevin`` (training's, step 0.01, 1,500 burn-in + 500 steps: the runs' samples
before ``sample.sampler``) and ``recipe`` (the 2-D recipe's ``[sample]`` section).

Run:  python benchmarks/sample_mixing.py RUN_FOLDER... [--samplers langevin recipe]
      [--chains 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.config import defaults_for, load_toml, sample_sampler
from ebmcore.evaluate import mmd
from ebmcore.runs.build import load_energy
from ebmcore.runs.chains import chain_diagnostics, finite_rows
from ebmcore.runs.trained_model import run_box, uniform_points

#: The runs' sampling before ``sample.sampler``: training's Langevin and the run settings.
LANGEVIN = {"sampler": {"name": "langevin", "params": {"step_size": 0.01}},
            "burn_in": 1500, "n_steps": 500, "thin": 5}


def exact_draws(model: Any, box: Any, n: int, seed: int) -> torch.Tensor:
    """``n`` draws of the model's density restricted to ``box``, from a 512x512 grid."""
    (lo_x, hi_x), (lo_y, hi_y) = box
    gx = torch.linspace(lo_x, hi_x, 512, dtype=torch.float64)
    gy = torch.linspace(lo_y, hi_y, 512, dtype=torch.float64)
    points = torch.cartesian_prod(gx, gy)
    with torch.no_grad():
        energy = torch.cat([model(c.float()).double() for c in points.split(65536)])
    gen = torch.Generator().manual_seed(seed)
    index = torch.multinomial(torch.softmax(-energy, 0), n, replacement=True, generator=gen)
    cell = torch.tensor([(hi_x - lo_x) / 511, (hi_y - lo_y) / 511], dtype=torch.float64)
    return points[index] + (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * cell


def measure(folder: Path, section: dict[str, Any]) -> dict[str, Any]:
    """Redraw ``folder``'s samples with ``section`` (a ``[sample]`` section) and score them."""
    n_chains = int(section["n_chains"])
    config = load_toml(folder / "config.toml")
    seed = int(config.get("seed", 0))
    model = load_energy(None, folder / "model.pt", torch.device("cpu"))
    data = ebmcore.create("dataset", config["dataset"]["name"], **config["dataset"]["params"])
    test_x = data.sample(int(config["evaluate"]["n_test"]),
                         generator=torch.Generator().manual_seed(seed + 10_000))
    box = run_box(config["evaluate"].get("bounds"), data, test_x)
    x0 = uniform_points(n_chains, (2,), box, torch.Generator().manual_seed(seed + 30_000),
                        torch.float32, torch.device("cpu"))
    block = sample_sampler(section)
    sampler = ebmcore.create("sampler", block["name"], **block["params"])
    result = sampler.sample(model, x0, int(section["n_steps"]), burn_in=int(section["burn_in"]),
                            thin=int(section["thin"]),
                            generator=torch.Generator().manual_seed(seed + 20_000),
                            return_trajectory=True, trace_chains=1000, backend="auto")
    chains = chain_diagnostics(result.trajectory.detach(), total_chains=n_chains,
                               stride=int(result.diagnostics.get("trajectory_stride", 1)))
    samples = finite_rows(result.samples.detach()).double()[:2000]
    exact = exact_draws(model, box, 2000, seed + 50_000)

    def p_value(a: torch.Tensor, b: torch.Tensor) -> float:
        n = min(a.shape[0], b.shape[0])
        return mmd(a[:n], b[:n], n_permutations=200,
                   generator=torch.Generator().manual_seed(seed + 40_000)).p_value

    reference = test_x[:2000].double()
    return {"data": config["dataset"]["name"], "sampler": block["name"],
            "max_rhat": None if chains["rhat"] is None else chains["rhat"]["max"],
            "mmd_p_data": p_value(samples, reference), "mmd_p_model": p_value(samples, exact),
            "exact_p_data": p_value(exact, reference),
            "seconds": result.diagnostics.get("seconds"), "load": os.getloadavg()[0],
            "settings": section}


def main() -> None:
    """Measure every folder with every sampler asked for; print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--samplers", nargs="+", default=["langevin", "recipe"],
                        choices=["langevin", "recipe"])
    parser.add_argument("--chains", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = defaults_for("eight_gaussians")["sample"]
    for folder in args.folders:
        for name in args.samplers:
            section = {**recipe, **(LANGEVIN if name == "langevin" else {}),
                       "n_chains": args.chains}
            started = time.perf_counter()
            row = measure(folder, section)
            row["wall"] = time.perf_counter() - started
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
