"""Digits generation: ebmcore's field recipes against TorchEBM 0.8.9, judged alike.

Trains, on scikit-learn's 8x8 digits (the ``digits`` data set's training split, dequantised
on ``[0, 1]``):

- ebmcore: ``ebmcore train --dataset digits --loss L`` for L in flow_matching,
  equilibrium_matching (and energy_matching where the digits recipe tunes it), exactly as the
  recipe says (no other setting), through :func:`ebmcore.runs.train_run`;
- TorchEBM 0.8.9: ``FlowMatchingLoss`` and ``EquilibriumMatchingLoss`` with their defaults
  (linear path, independent coupling, uniform times; EqM truncated c(t), threshold 0.8,
  multiplier 4, time-invariant), on the *same* network (the field module the recipe names,
  with its widths and the same initial weights), the same steps, batch, Adam learning rate
  and weight average (EMA) as the recipe, sampled by TorchEBM's ``FlowSampler`` with the
  recipe's integrator and steps.

Every model is judged by the same code (:func:`ebmcore.runs.field_images.
image_sample_report`) on the held-out split: a logistic regression on raw pixels (samples
clipped to [0, 1], confident = p >= 0.9; share confident, classes covered, largest class
among the confident), the Fréchet distance in the features of a classifier trained on the
training split over the held-out split's own distance, and, for the flow-matching fields,
the probability-flow ODE's exact likelihood in bits per dimension on the dequantised
held-out images (RK4, exact divergence, D = 64) beside the exact Gaussian baseline the run
fits. Training seconds are wall-clock on one thread (``--threads 1``).

Usage::

    python benchmarks/digits_generation.py                    # every method, recipe steps
    python benchmarks/digits_generation.py --methods fm,torchebm_fm --steps 2000
    python benchmarks/digits_generation.py --out runs/digits --methods fm,eqm
    python benchmarks/digits_generation.py --picture runs/digits/flow_matching \\
        docs/images/digits-flow-samples.png "flow matching samples (ebmcore recipe)"

It prints a markdown table, with the machine's one-minute load at the start and end of each
row. Runtime: per method, its training (the recipes' 6,000 U-Net steps take about 430 s of
one core, 70 ms a step) plus a few minutes of evaluation (flow matching's exact likelihood
takes most: one backward pass of the U-Net per dimension and field evaluation). The
TorchEBM rows follow the recipe's network, steps, batch, rate and EMA, with TorchEBM's own
(uniform) training times.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.config import check_train_config, defaults_for
from ebmcore.runs import train_run
from ebmcore.runs.build import descriptor, shape_params
from ebmcore.runs.field_images import held_out_images, image_sample_report

#: ebmcore's losses by the short name the table uses.
EBMCORE = {"fm": "flow_matching", "eqm": "equilibrium_matching", "em": "energy_matching"}
#: TorchEBM's rows and the ebmcore recipe whose settings they copy.
TORCHEBM = {"torchebm_fm": "flow_matching", "torchebm_eqm": "equilibrium_matching"}


def recipe(loss: str, steps: int | None) -> dict[str, Any]:
    """The digits recipe for ``loss`` (one thread; ``steps`` overrides the recipe's)."""
    config = defaults_for("digits", loss)
    config["train"]["threads"] = 1
    if steps is not None:
        config["train"]["steps"] = steps
    check_train_config(config)
    return config


def ebmcore_row(loss: str, steps: int | None, folder: Path) -> dict[str, Any]:
    """Train and judge one ebmcore recipe through the run machinery."""
    metrics = train_run(recipe(loss, steps), folder / loss)
    report = metrics.get("image_samples") or metrics.get("image_evaluation", {})
    likelihood = metrics.get("likelihood") or {}
    return {"train_seconds": metrics["timings"]["train_seconds"],
            "steps": metrics["steps_done"], "report": report,
            "bits_per_dim": likelihood.get("bits_per_dim"),
            "gaussian_bits_per_dim": (metrics.get("baselines") or {}).get(
                "gaussian", {}).get("bits_per_dim")}


def torchebm_row(name: str, steps: int | None, seed: int = 0) -> dict[str, Any]:
    """Train TorchEBM's loss on the recipe's network, steps, batch, rate and EMA; judge it."""
    from torchebm.losses import EquilibriumMatchingLoss, FlowMatchingLoss
    from torchebm.samplers import FlowSampler

    from ebmcore.evaluation.likelihood import flow_log_likelihood
    from ebmcore.training.ema import EMA

    config = recipe(TORCHEBM[name], steps)
    train_cfg, model_cfg = config["train"], config["model"]
    digits = ebmcore.create("dataset", "digits")
    torch.manual_seed(seed)
    field = ebmcore.create("model", model_cfg["name"],
                           **shape_params(descriptor("model", model_cfg["name"]), digits),
                           **model_cfg["params"])
    shape = tuple(field.event_shape)  # (64,) for an MLP field, (1, 8, 8) for the U-Net
    eqm = name == "torchebm_eqm"
    loss_fn = (EquilibriumMatchingLoss(model=field) if eqm else FlowMatchingLoss(model=field))
    optimizer = torch.optim.Adam(field.parameters(), lr=train_cfg["lr"])
    ema = EMA(field, train_cfg["ema"]) if train_cfg.get("ema") else None
    data_gen = torch.Generator().manual_seed(seed)
    loss_gen = torch.Generator().manual_seed(seed + 1)
    torch.set_num_threads(1)
    started = time.perf_counter()
    for _ in range(int(train_cfg["steps"])):
        batch = digits.sample(int(train_cfg["batch_size"]), data_gen).reshape(-1, *shape)
        loss = loss_fn(batch, generator=loss_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update()
    seconds = time.perf_counter() - started
    model = (ema.model if ema is not None else field).eval()
    sampler_params = config["sampler"]["params"]
    sampler = FlowSampler(model, integrator=sampler_params.get("integrator", "heun"),
                          negate_velocity=eqm)
    with torch.no_grad():
        samples = sampler.sample(dim=shape, n_steps=int(sampler_params.get("steps", 50)),
                                 n_samples=int(config["sample"]["n_chains"]),
                                 generator=torch.Generator().manual_seed(seed + 20_000))
    report = image_sample_report(digits, samples.reshape(-1, 1, 8, 8), seed=seed)
    bits = None
    if not eqm:
        _, (test, _) = held_out_images(digits, seed)
        integ = config["evaluate"]["integrator"]
        integrator = ebmcore.create("integrator", integ["name"], **integ.get("params", {}))
        n = int(config["evaluate"]["likelihood_points"])
        bits = flow_log_likelihood(model, test[:n].float().reshape(-1, *shape), integrator,
                                   bin_width=digits.bin_width).bits_per_dim
    return {"train_seconds": seconds, "steps": int(train_cfg["steps"]), "report": report,
            "bits_per_dim": bits}


def cells(label: str, row: dict[str, Any]) -> str:
    """One markdown table row."""
    report = row["report"]
    judge = report.get("logistic_coverage", {})
    frechet = report.get("frechet", {})
    bits = row.get("bits_per_dim")
    load = "—" if "load" not in row else f"{row['load'][0]:.1f} to {row['load'][1]:.1f}"
    return (f"| {label} | {100 * judge.get('confident_share', float('nan')):.0f} % | "
            f"{judge.get('classes_covered', '—')} | "
            f"{100 * judge.get('max_share', float('nan')):.0f} % | "
            f"{frechet.get('ratio', float('nan')):.2f}x | "
            f"{'—' if bits is None else f'{bits:.2f}'} | {row['steps']} | "
            f"{row['train_seconds']:.0f} | {load} |")


def picture(run: Path, out: Path, title: str, seed: int = 0) -> None:
    """Write ``out``: 64 of the samples a run folder holds (``samples.pt``) beside 64
    held-out digits, both on the data's ``[0, 1]`` scale (values outside clipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    digits = ebmcore.create("dataset", "digits")
    samples = torch.load(run / "samples.pt")[:64].reshape(-1, 8, 8)
    held_out = digits.held_out().sample(64, torch.Generator().manual_seed(seed + 50_000))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax, images, label in ((axes[0], samples, title), (axes[1], held_out, "held-out digits")):
        tiles = images.reshape(8, 8, 8, 8).clamp(0, 1)
        # an 8 x 8 mosaic with a one-pixel white gap between the images
        mosaic = torch.zeros(8 * 9, 8 * 9)
        for i in range(8):
            for j in range(8):
                mosaic[9 * i:9 * i + 8, 9 * j:9 * j + 8] = tiles[i, j]
        ax.imshow(mosaic.numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(label, fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Run the chosen methods and print the table (and a JSON dump with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="fm,eqm,torchebm_fm,torchebm_eqm",
                        help="comma-separated: fm, eqm, em, torchebm_fm, torchebm_eqm")
    parser.add_argument("--steps", type=int, default=None, help="override the recipes' steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep ebmcore's run folders here (default: a temporary folder)")
    parser.add_argument("--picture", nargs=3, metavar=("RUN", "PNG", "TITLE"), default=None,
                        help="only draw a run folder's samples beside held-out digits")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.picture is not None:
        run, png, title = args.picture
        picture(Path(run), Path(png), title)
        return
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if args.out is None else args.out
        for method in args.methods.split(","):
            method = method.strip()
            load = os.getloadavg()[0]
            if method in EBMCORE:
                rows[method] = ebmcore_row(EBMCORE[method], args.steps, folder)
            elif method in TORCHEBM:
                rows[method] = torchebm_row(method, args.steps)
            else:
                raise SystemExit(f"unknown method {method!r}")
            # the machine's one-minute load at the start and end of the row: wall-clock
            # seconds on a shared machine mean little without it
            rows[method]["load"] = (load, os.getloadavg()[0])
            print(cells(method, rows[method]), flush=True)
    labels = {"fm": "ebmcore flow matching", "eqm": "ebmcore equilibrium matching",
              "em": "ebmcore energy matching", "torchebm_fm": "TorchEBM flow matching",
              "torchebm_eqm": "TorchEBM equilibrium matching"}
    first = next(iter(rows.values()))["report"]
    print("\n| run | confident | classes | largest class | Fréchet ratio | bits/dim | steps "
          "| train s | load |\n|---|---|---|---|---|---|---|---|---|")
    data = first.get("logistic_data_coverage", {})
    print(f"| real held-out digits | {100 * data.get('confident_share', 0):.0f} % | "
          f"{data.get('classes_covered')} | {100 * data.get('max_share', 0):.0f} % | 1 "
          f"(reference) | — | — | — | — |")
    for method, row in rows.items():
        print(cells(labels[method], row))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
