"""Predict a flow model's million-sample histogram TV from its exact density (issue #23).

Sampling a million points from a flow takes 30-45 minutes of one CPU core, too slow to
screen recipes with. A flow's probability-flow ODE gives its density exactly
(:func:`ebmcore.evaluation.likelihood.flow_log_likelihood`: RK4 with the exact divergence),
so its cell probabilities on the evaluation grid (100 x 100 cells over ``[-5, 5]²``) are a
quadrature: the density ``f`` at ``sub x sub`` points of each cell (the midpoints of its
sub-cells), each sub-cell's mass ``area * (f + lap(f) / 24)`` (``--rule corrected``, the
default: the five-point Laplacian of the neighbours, fourth order for a smooth density; or
``--rule midpoint``, ``area * f``), summed. Against the exact cells (the data set's density by the
midpoint rule on 4 x 4 sub-cells, as
:func:`ebmcore.evaluation.sample_metrics.streamed_histogram_tv` computes them) that gives

- the **infinite-sample TV**, ``0.5 * sum |p_model - p_exact|`` (plus the mass outside the
  box, one more cell), the model's own error at this resolution;
- the **predicted n-sample TV**: the TV of ``Multinomial(n, p_model)`` draws against
  ``p_exact``, over a few repeats, divided by the floor (the same for
  ``Multinomial(n, p_exact)``), which is what ``benchmarks/generative.py --tv-samples n``
  measures, up to the sampler's integration error (the density is that of the exact flow,
  the samples come from Heun's 100 steps) and its draws' noise.

Subcommands (torch on one thread):

    python benchmarks/flow_grid_tv.py train --dataset D --name NAME [--set train.steps=30000]
        [--cosine]     # trains the recipe (generative.py's --set syntax), saves
                       # /tmp/fmtv/NAME.pt (config, EMA weights, seconds, NLL gap)
    python benchmarks/flow_grid_tv.py eval NAME [--sub 2] [--ode-steps 50] [--n 1000000]
                       # 1 point per cell and RK4 at 50 steps: ~40 s, converged to ~1 %
    python benchmarks/flow_grid_tv.py sample NAME [--n 100000]   # real sampled TV, as
                       # generative.py measures it (the run's flow sampler, seeded alike)
    python benchmarks/flow_grid_tv.py sampler NAME --n 5000 --ode-steps 200
                       # the run's sampler against fine RK4 from the same noise

``--cosine`` / ``--no-cosine`` set ``train.lr_schedule`` to ``"cosine"`` (Adam's rate decays
to 0 along a half cosine over the run) or none (default: the recipe's). ``eval --region A B``
restricts the quadrature to the cells ``A..B-1`` on both axes, for convergence checks.
Figures and screens: docs/training-results.md, "A million samples, predicted from the
density".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generative  # noqa: E402  - the benchmark script beside this one

OUT = Path("/tmp/fmtv")
RESOLUTION = 100


def nll_gap(model: Any, built: dict[str, Any]) -> dict[str, Any]:
    """The NLL gap on 2,000 held-out points (seed 10,000), RK4 100 steps, as generative.py."""
    args = argparse.Namespace(points=2000, ode_steps=100, check_convergence=False,
                              tv_samples=0)
    return generative.judge_flow(model, built, "flow_matching", args)


def train(args: argparse.Namespace) -> None:
    """Train the flow-matching recipe of ``args.dataset`` and save its EMA weights."""
    import torch

    sets = generative.parse_sets(args.set)
    if args.cosine is not None:
        sets["train.lr_schedule"] = "cosine" if args.cosine else None
    config = generative.run_config(args.dataset, "flow_matching", sets)
    built = generative.build(config)
    model, seconds = generative.train_ebmcore(built)
    gap = nll_gap(model, built)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": args.dataset, "sets": args.set, "cosine": args.cosine,
            "train_seconds": seconds, **gap}
    torch.save({"config": config, "state": model.state_dict(), "meta": meta},
               OUT / f"{args.name}.pt")
    print(json.dumps({"name": args.name, **meta}), flush=True)


def load(name: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The saved model ``name`` (built from its config, EMA weights loaded), its built run
    and its metadata."""
    import torch

    saved = torch.load(OUT / f"{name}.pt", weights_only=False)
    built = generative.build(saved["config"])
    model = built["model"]
    model.load_state_dict(saved["state"])
    return model.eval(), built, saved["meta"]


def model_density(model: Any, built: dict[str, Any], sub: int, ode_steps: int,
                  cells: range | None = None, batch: int = 4096) -> Any:
    """The model's exact flow density at the midpoints of ``sub x sub`` sub-cells of every
    grid cell, ``(RESOLUTION * sub, RESOLUTION * sub)`` in ``make_grid``'s order, and a
    sub-cell's area. ``cells``
    (a range of cell indices per axis) restricts it to a square sub-box (NaN elsewhere)."""
    import torch

    import ebmcore
    from ebmcore.evaluation.grid import make_grid
    from ebmcore.evaluation.likelihood import flow_log_likelihood

    fine = RESOLUTION * sub
    points, area = make_grid(built["dataset"].evaluation_box, fine)
    keep = torch.ones(fine, dtype=torch.bool)
    if cells is not None:
        index = torch.arange(fine) // sub
        keep = (index >= cells.start) & (index < cells.stop)
    mask = (keep[:, None] & keep[None, :]).reshape(-1)
    settings = built["loss"].flow_settings()
    lik = flow_log_likelihood(model, points[mask].float(),
                              ebmcore.create("integrator", "rk4", steps=ode_steps),
                              interpolant=settings.get("interpolant"),
                              prediction=settings.get("prediction", "velocity"),
                              batch_size=batch)
    density = torch.full((points.shape[0],), float("nan"), dtype=torch.float64)
    density[mask] = lik.per_point.exp()
    return density.reshape(fine, fine), area


def cell_masses(density: Any, area: float, sub: int, corrected: bool) -> Any:
    """Cell probabilities ``(RESOLUTION**2,)`` from sub-cell midpoint densities: the
    midpoint rule, or with ``corrected`` each sub-cell's average as ``f + lap(f) / 24``
    (the five-point Laplacian of the neighbours; fourth order for a smooth density; a
    missing neighbour counts as the centre)."""
    import torch

    f = density
    if corrected:
        padded = torch.nn.functional.pad(f[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
        lap = torch.zeros_like(f)
        for nb in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
            lap = lap + torch.where(torch.isnan(nb), f, nb) - f
        f = f + lap / 24
    return (f * area).reshape(RESOLUTION, sub, RESOLUTION, sub).sum((1, 3)).reshape(-1)


def exact_cells(dataset: Any) -> Any:
    """The data's cell probabilities, as ``streamed_histogram_tv`` computes them."""
    from ebmcore.evaluation.sample_metrics import _cell_probabilities

    return _cell_probabilities(dataset, tuple(map(tuple, dataset.evaluation_box)),
                               RESOLUTION, 4)


def tv(p: Any, q: Any) -> float:
    """``0.5 * sum |p - q|`` with the mass outside the box (``1 - sum``) as one more cell."""
    return 0.5 * (float((p - q).abs().sum()) + abs(float(q.sum()) - float(p.sum())))


def sampled_tv(p: Any, exact: Any, n: int, repeats: int, seed: int) -> tuple[float, float]:
    """Mean and standard deviation over ``repeats`` of the TV between the histogram of
    ``n`` draws from the cells ``p`` (the rest of the mass outside the box) and ``exact``."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    probs = np.append(p.clamp_min(0).numpy(), max(0.0, 1.0 - float(p.sum())))
    probs = probs / probs.sum()
    values = []
    for _ in range(repeats):
        counts = torch.from_numpy(rng.multinomial(n, probs)[:-1].astype(np.float64))
        values.append(tv(counts / n, exact))
    return float(np.mean(values)), float(np.std(values, ddof=1)) if repeats > 1 else 0.0


def evaluate(args: argparse.Namespace) -> None:
    """Print the infinite-sample and predicted n-sample TV of the saved model."""
    import torch

    model, built, meta = load(args.name)
    exact = exact_cells(built["dataset"])
    started = time.perf_counter()
    region = range(*args.region) if args.region else None
    density, area = model_density(model, built, args.sub, args.ode_steps, region)
    seconds = time.perf_counter() - started
    if args.save_cells:
        torch.save((density, area), OUT / f"{args.name}.density{args.sub}x{args.ode_steps}.pt")
    cells = cell_masses(density, area, args.sub, args.rule == "corrected")
    out: dict[str, Any] = {"name": args.name, "dataset": meta["dataset"], "sub": args.sub,
                           "ode_steps": args.ode_steps, "rule": args.rule,
                           "eval_seconds": round(seconds, 1),
                           "gap": meta.get("gap"), "train_seconds": meta.get("train_seconds")}
    for rule in ("midpoint", "corrected"):
        masses = cell_masses(density, area, args.sub, rule == "corrected")
        keep = ~torch.isnan(masses)
        out[f"{rule}_mass"] = float(masses[keep].sum())
        out[f"{rule}_abs_diff"] = float((masses[keep] - exact[keep]).abs().sum())
    if region is None:
        out["mass_in_box"] = float(cells.sum())
        out["tv_inf"] = tv(cells, exact)
        for n in args.n:
            model_tv, model_sd = sampled_tv(cells, exact, n, args.repeats, 1)
            floor, floor_sd = sampled_tv(exact, exact, n, args.repeats, 2)
            out[f"n{n}"] = {"tv": round(model_tv, 5), "tv_sd": round(model_sd, 5),
                            "floor": round(floor, 5), "ratio": round(model_tv / floor, 3)}
    print(json.dumps(out), flush=True)


def sample(args: argparse.Namespace) -> None:
    """The real sampled TV of the saved model at ``n`` samples, as generative.py judges."""
    model, built, meta = load(args.name)
    ns = argparse.Namespace(tv_samples=args.n[0])
    started = time.perf_counter()
    out = generative.judge_flow(model, built, "equilibrium_matching", ns)  # TV only
    print(json.dumps({"name": args.name, "n": args.n[0], **out,
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)


def sampler_error(args: argparse.Namespace) -> None:
    """How far the run's flow sampler lands from a fine RK4 integration of the same noise:
    the share of ``n`` points whose grid cell differs bounds the TV between the two
    samplers' pushforwards (the same noise couples them)."""
    import torch

    import ebmcore
    from ebmcore.evaluation.sample_metrics import _cell_counts
    from ebmcore.runs.fields import flow_sampler

    model, built, _ = load(args.name)
    settings = built["loss"].flow_settings()
    run = flow_sampler(built["config"]["sampler"], settings)
    fine = ebmcore.create("sampler", "flow", integrator="rk4", steps=args.ode_steps,
                          **settings)
    x0 = torch.randn(args.n[0], 2, generator=torch.Generator().manual_seed(40_000))
    started = time.perf_counter()
    a = run.sample(model, args.n[0], x0=x0).samples.double()
    b = fine.sample(model, args.n[0], x0=x0).samples.double()
    box = tuple(map(tuple, built["dataset"].evaluation_box))
    width = (box[0][1] - box[0][0]) / RESOLUTION
    moved = ((torch.floor((a - box[0][0]) / width) != torch.floor((b - box[0][0]) / width))
             .any(1).double().mean())
    ca, _ = _cell_counts(a, box, RESOLUTION)
    cb, _ = _cell_counts(b, box, RESOLUTION)
    dist = (a - b).norm(dim=1)
    print(json.dumps({"name": args.name, "run_sampler": repr(run.integrator),
                      "reference": repr(fine.integrator), "n": args.n[0],
                      "share_other_cell": float(moved),
                      "hist_tv": 0.5 * float((ca - cb).abs().sum()) / args.n[0],
                      "mean_shift": float(dist.mean()), "max_shift": float(dist.max()),
                      "seconds": round(time.perf_counter() - started, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--dataset", required=True, choices=generative.DATASETS)
    p.add_argument("--name", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--cosine", action=argparse.BooleanOptionalAction, default=None,
                   help="train.lr_schedule 'cosine' (--cosine) or none (--no-cosine)")
    for command in ("eval", "sample", "sampler"):
        p = sub.add_parser(command)
        p.add_argument("name")
        p.add_argument("--n", type=int, nargs="+",
                       default=[1_000_000] if command == "eval" else [100_000])
        p.add_argument("--sub", type=int, default=2)
        p.add_argument("--ode-steps", type=int, default=50)
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--region", type=int, nargs=2, default=None)
        p.add_argument("--save-cells", action="store_true")
        p.add_argument("--rule", choices=("midpoint", "corrected"), default="corrected")
    args = parser.parse_args()

    import numba  # noqa: F401  - before setting threads: numba can reset them
    import torch

    torch.set_num_threads(1)
    {"train": train, "eval": evaluate, "sample": sample,
     "sampler": sampler_error}[args.command](args)


if __name__ == "__main__":
    main()
