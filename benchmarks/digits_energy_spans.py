"""Digits energy matching: how far to descend a trained energy, judged on validation draws.

An energy-matching run on the digits (``ebmcore train --dataset digits --loss
energy_matching``) writes the end points of a gradient descent of its energy from the
base's noise; how long that descent runs (its *span*, in the potential's time units:
``steps * step_size / epsilon_max``) decides how clean and how bold the samples are. This
script loads a run's energy (its newest checkpoint's EMA weights when the run kept them,
its config.toml for the model and the sampler's step), descends from
fresh standard-normal draws with the run's own sampler step, and judges the states at each
span with the run's judge (:func:`ebmcore.runs.field_images.image_sample_report`: a
logistic regression on raw pixels, confident = p >= 0.9, and the Fréchet ratio). The draws
come from seeds other than the run's own (which starts from seed ``seed + 30,000``), so a
span chosen here is not tuned on the draw the run reports.

Usage::

    python benchmarks/digits_energy_spans.py runs/digits-em --spans 1.0,1.26,1.4,1.6 \\
        --seeds 777,778 [--checkpoint runs/digits-em/checkpoints/step-000003500.pt]

It prints one markdown row per span: the mean over the seeds of the confident share (each
seed's in brackets), the fewest classes covered, the largest class share and the mean
Fréchet ratio. One span on 1,000 samples takes about 10 s of one core.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.checkpoint import load_checkpoint
from ebmcore.config import load_toml
from ebmcore.energy import Energy
from ebmcore.evaluation.images import train_classifier
from ebmcore.runs.field_images import held_out_images, image_sample_report


def load_energy(folder: str | Path, checkpoint: str | Path | None = None
                ) -> tuple[Energy, float, float]:
    """Return a run's energy (the EMA weights when the run kept them), its sampler's step
    size and the loss's ``epsilon_max`` (the potential is ``V = epsilon_max * E``), read
    from the run folder's ``config.toml`` and ``checkpoint`` (default: the folder's newest).

    Raises:
        FileNotFoundError: When the folder has no ``config.toml`` or no checkpoint.
    """
    folder = Path(folder)
    if not (folder / "config.toml").is_file():
        raise FileNotFoundError(f"folder {str(folder)!r} has no config.toml (a run folder?)")
    if checkpoint is None:
        found = sorted((folder / "checkpoints").glob("step-*.pt"))
        if not found:
            raise FileNotFoundError(f"folder {str(folder)!r} has no checkpoints/step-*.pt")
        checkpoint = found[-1]
    state = load_checkpoint(checkpoint)
    config = load_toml(folder / "config.toml")
    model_cfg = config["model"]
    energy = ebmcore.create("model", model_cfg["name"], **model_cfg.get("params", {}))
    energy.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    energy.eval()
    step = float(config["sampler"]["params"]["step_size"])
    eps = float(config["loss"]["params"].get("epsilon_max", 0.15))
    return energy, step, eps


def judge_spans(energy: Energy, dataset: Any, spans: Sequence[float], seeds: Sequence[int],
                n: int, step_size: float, epsilon_max: float) -> list[dict[str, Any]]:
    """Descend ``energy`` by gradient steps of ``step_size`` from ``n`` standard-normal draws
    per seed and judge the states at each span (time units of ``V = epsilon_max * E``).

    Returns one dict per span: ``span``, ``steps``, ``confident`` (per seed), ``classes``
    (fewest over seeds), ``max_share`` (largest over seeds), ``frechet`` (per seed).

    Raises:
        ValueError: When ``spans`` is empty or not increasing and positive, ``seeds`` is
            empty, or ``n``, ``step_size`` or ``epsilon_max`` is not positive.
    """
    spans = [float(s) for s in spans]
    if not spans or spans[0] <= 0 or any(b <= a for a, b in zip(spans, spans[1:], strict=False)):
        raise ValueError(f"spans must be positive and increasing, got {spans}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if n < 1 or step_size <= 0 or epsilon_max <= 0:
        raise ValueError(f"n, step_size and epsilon_max must be positive, got n={n}, "
                         f"step_size={step_size}, epsilon_max={epsilon_max}")
    (train, labels), _ = held_out_images(dataset, 0)
    judge = train_classifier(train.float(), labels, dataset.n_classes, seed=0)
    dt = step_size / epsilon_max  # time units per step
    targets = [max(1, round(span / dt)) for span in spans]
    rows = [{"span": span, "steps": k, "confident": [], "frechet": [], "classes": 10**9,
             "max_share": 0.0} for span, k in zip(spans, targets, strict=True)]
    shape = tuple(dataset.event_shape)
    for seed in seeds:
        x = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
        done = 0
        for row in rows:
            with torch.no_grad():
                for _ in range(row["steps"] - done):
                    x = x - step_size * energy.grad(x)
            done = row["steps"]
            report = image_sample_report(dataset, x, seed=0, classifier=judge)
            coverage = report["logistic_coverage"]
            row["confident"].append(coverage["confident_share"])
            row["frechet"].append(report["frechet"]["ratio"])
            row["classes"] = min(row["classes"], coverage["classes_covered"])
            row["max_share"] = max(row["max_share"], coverage["max_share"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print the span table for a run checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_folder")
    parser.add_argument("--checkpoint", default=None, help="default: the folder's newest")
    parser.add_argument("--spans", default="1.0,1.26,1.4,1.6")
    parser.add_argument("--seeds", default="777,778")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    energy, step, eps = load_energy(args.run_folder, args.checkpoint)
    rows = judge_spans(energy, ebmcore.create("dataset", "digits"),
                       [float(s) for s in args.spans.split(",")],
                       [int(s) for s in args.seeds.split(",")], args.n, step, eps)
    print("| span | steps | confident (logistic) | classes | largest class | Fréchet ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        each = " / ".join(f"{c:.1%}" for c in r["confident"])
        mean_c = sum(r["confident"]) / len(r["confident"])
        mean_f = sum(r["frechet"]) / len(r["frechet"])
        print(f"| {r['span']:g} | {r['steps']} | {mean_c:.1%} ({each}) | {r['classes']} | "
              f"{r['max_share']:.1%} | {mean_f:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
