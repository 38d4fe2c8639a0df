"""Training quality: each loss trains the mlp energy on 2-D data with a known density.

For every (loss, data set) pair it trains ``mlp(2)`` (hidden (128, 128), SiLU) for ``--steps``
Adam steps at batch 256 with ebmcore.train.Trainer, then normalises the energy on a 256x256
grid over [-5, 5]^2 (ebmcore.evaluate.grid_evaluation) and reports, on 20,000 fresh test
points, the test NLL, the data set's own NLL on the same points, their gap, KL(data||model)
and total variation. Torch runs on one thread; each pair runs in its own process.

Run:  python benchmarks/training_quality.py [--steps 2000] [--jobs 2] [--losses ...]
      [--datasets ...] [--lr 1e-3] [--ema 0.99] [--param alpha=0.0] [--test-seed 123]
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from concurrent.futures import ProcessPoolExecutor

LOSSES = {
    "cd": {"alpha": 0.1},  # cd's default alpha is 0; without it CD-k energies drift
    "pcd": {},
    "sliced_score_matching": {},
    "denoising_score_matching": {},
}
DATASETS = ("eight_gaussians", "checkerboard", "rings")


def run_one(loss_name: str, dataset_name: str, steps: int, seed: int,
            overrides: dict | None = None, trainer_kw: dict | None = None,
            test_seed: int | None = None) -> dict:
    import numba  # noqa: F401  - before setting threads: numba can reset them
    import torch

    import ebmcore
    from ebmcore.evaluate import grid_evaluation
    from ebmcore.train import Trainer

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = ebmcore.create("model", "mlp", dim=2)
    loss = ebmcore.create("loss", loss_name, **{**LOSSES[loss_name], **(overrides or {})})
    dataset = ebmcore.create("dataset", dataset_name)
    trainer = Trainer(model, loss, data=dataset, steps=steps, batch_size=256, seed=seed,
                      log_every=max(1, steps // 10), **(trainer_kw or {}))
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    test_seed = 10_000 + seed if test_seed is None else test_seed
    test = dataset.sample(20000, generator=torch.Generator().manual_seed(test_seed))
    evaluated = trainer.ema_model if trainer.ema_model is not None else model
    ev = grid_evaluation(evaluated, dataset, test, bounds=(-5.0, 5.0), resolution=256)
    return {"loss": loss_name, "dataset": dataset_name, "steps": steps, "seed": seed,
            "nll": ev.nll, "data_nll": ev.data_nll, "gap": ev.nll_gap, "kl": ev.kl,
            "tv": ev.tv, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: the trainer's)")
    parser.add_argument("--ema", type=float, help="evaluate an EMA of the weights, this decay")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a loss parameter (a Python literal), e.g. alpha=0.0")
    parser.add_argument("--test-seed", type=int,
                        help="seed of the test points (default: 10000 + --seed)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    overrides = {}
    for item in args.param:
        name, _, value = item.partition("=")
        overrides[name] = ast.literal_eval(value)
    trainer_kw = {k: v for k, v in (("lr", args.lr), ("ema", args.ema)) if v is not None}
    pairs = [(loss, ds) for ds in args.datasets for loss in args.losses]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, loss, ds, args.steps, args.seed, overrides, trainer_kw,
                               args.test_seed) for loss, ds in pairs]
        rows = [f.result() for f in futures]
    print(f"{args.steps} steps, batch 256, mlp(2) hidden (128, 128), seed {args.seed}; "
          f"grid 256x256 on [-5, 5]^2; 20,000 test points; overrides {overrides} "
          f"{trainer_kw}")
    print("| data set | loss | test NLL | data NLL | gap | KL(data‖model) | TV | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['loss']} | {r['nll']:.3f} | {r['data_nll']:.3f} | "
              f"{r['gap']:.3f} | {r['kl']:.3f} | {r['tv']:.3f} | {r['seconds']:.0f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
