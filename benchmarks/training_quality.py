"""Training quality: each loss trains the mlp energy on 2-D data with a known density.

For every (loss, data set) pair it trains the model of the loss's run recipe
(``ebmcore.config.defaults_for``: ``mlp(2)`` with its default four hidden layers of 128, SiLU
and its confining wall, or two layers for exact and sliced score matching, the latter with
its gradient norm clipped at 1) for ``--steps`` Adam steps at batch 256 with
ebmcore.train.Trainer, then
evaluates it honestly with ebmcore.evaluate.grid_evaluation: a 256x256 grid over [-5, 5]^2
plus four rings of nested boxes out to 81 times that box, so the normaliser is the whole
plane's, and a far-field probe at radii 10, 100 and 1000. It reports, on 20,000 fresh test
points, the test NLL, the data set's own NLL on the same points, their gap, KL(data||model),
total variation, the model's mass outside the box and outside three times the box, and the
least energy at radius 1000 against the highest energy on the test points; a model that is
not a density shows "not normalisable" instead of a likelihood. Torch runs on one thread;
each pair runs in its own process.

``--peers`` also trains, on the same data sets, the contrastive losses of two peer libraries,
TorchEBM 0.8.9 (rows ``torchebm:cd``, ``torchebm:pcd``) and ebmkit 0.16.0 (``ebmkit:cd``,
``ebmkit:pcd``), each run where its base name is in ``--losses``, and evaluates them the same
way. Each peer trains a plain MLP 2-128-128-1 with SiLU (no confining wall: the peers have
none) from the same initial weights as ours, on the same batches, for ``--steps`` Adam steps
at ``--lr`` (default 3e-3, ours), with its own loss at its defaults and Langevin step size 0.01
(see ``benchmarks/peers.py`` for what each uses); ``--ema``, ``--param`` and
``--model-param`` apply to ebmcore's runs only. A peer that is not installed or does not
import is reported and skipped. Install the peers, without letting pip touch torch, with

      pip install --no-deps torchebm==0.8.9 ebmkit==0.16.0

``--datasets`` also takes the four built-in sets without a closed-form density
(``two_moons``, ``swiss_roll``, ``spirals``, ``pinwheel``): they get the whole-plane figures
the model alone gives (test NLL, mass outside the box, far field) and no gap, KL or TV.

Run:  python benchmarks/training_quality.py [--steps 2000] [--jobs 2] [--losses ...]
      [--datasets ...] [--lr 1e-3] [--ema 0.99] [--param alpha=0.0] [--test-seed 123]
      [--peers]
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from concurrent.futures import ProcessPoolExecutor

#: Every loss runs with its own defaults; ``--param`` overrides them for an ablation.
LOSSES = ("cd", "pcd", "pt_cd", "nce", "score_matching", "sliced_score_matching",
          "denoising_score_matching")
DATASETS = ("eight_gaussians", "checkerboard", "rings")
#: Every built-in 2-D data set; those without a closed-form density (``two_moons``,
#: ``swiss_roll``, ``spirals``, ``pinwheel``) get no gap, KL or TV, but the mass outside the box.
ALL_DATASETS = (*DATASETS, "two_moons", "swiss_roll", "spirals", "pinwheel")
#: The trainer settings a loss's run recipe may change (``ebmcore.config.LOSS_RECIPES``).
TRAINER_RECIPE_KEYS = ("lr", "grad_clip", "ema")


def run_one(loss_name: str, dataset_name: str, steps: int, seed: int,
            overrides: dict | None = None, trainer_kw: dict | None = None,
            test_seed: int | None = None, model_kw: dict | None = None) -> dict:
    import numba  # noqa: F401  - before setting threads: numba can reset them
    import torch

    import ebmcore
    from ebmcore.config import defaults_for
    from ebmcore.train import Trainer

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    recipe = defaults_for(dataset_name, loss_name)
    params = {**recipe["model"]["params"], **(model_kw or {})}
    model = ebmcore.create("model", recipe["model"]["name"], dim=2, **params)
    trainer_kw = {**{k: v for k, v in recipe["train"].items() if k in TRAINER_RECIPE_KEYS},
                  **(trainer_kw or {})}
    loss = ebmcore.create("loss", loss_name, **(overrides or {}))
    dataset = ebmcore.create("dataset", dataset_name)
    trainer = Trainer(model, loss, data=dataset, steps=steps, batch_size=256, seed=seed,
                      log_every=max(1, steps // 10), **trainer_kw)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    evaluated = trainer.ema_model if trainer.ema_model is not None else model
    recipe_label = _hidden(list(model.hidden)) + "".join(
        f", {k.replace('_', ' ')} {trainer_kw[k]:g}" for k in ("grad_clip", "ema")
        if trainer_kw.get(k) is not None)
    return _evaluated_row(evaluated, loss_name, dataset_name, steps, seed, recipe_label,
                          test_seed, seconds)


def run_peer(peer: str, loss_name: str, dataset_name: str, steps: int, seed: int,
             lr: float | None = None, test_seed: int | None = None) -> dict:
    """Train ``peer``'s ``loss_name`` (see benchmarks/peers.py); a row like :func:`run_one`'s."""
    import numba  # noqa: F401  - before setting threads: numba can reset them
    import torch
    from peers import train_peer  # benchmarks/ is on sys.path when this runs as a script


    torch.set_num_threads(1)
    start = time.perf_counter()
    energy = train_peer(peer, loss_name, dataset_name, steps, seed, 3e-3 if lr is None else lr)
    seconds = time.perf_counter() - start
    return _evaluated_row(energy, f"{peer}:{loss_name}", dataset_name, steps, seed,
                          "128x2, no wall", test_seed, seconds)


def _evaluated_row(energy, label: str, dataset_name: str, steps: int, seed: int,
                   recipe: str, test_seed: int | None, seconds: float) -> dict:
    """The table's row for a trained ``energy``: the whole-plane evaluation on 20,000 fresh
    test points (seed ``test_seed``, default 10,000 + ``seed``)."""
    import torch

    import ebmcore
    from ebmcore.evaluate import grid_evaluation

    dataset = ebmcore.create("dataset", dataset_name)
    test_seed = 10_000 + seed if test_seed is None else test_seed
    test = dataset.sample(20000, generator=torch.Generator().manual_seed(test_seed))
    # a data set without a closed-form density still gets the whole-plane figures the model
    # alone gives (test NLL, mass outside the box, the far field); gap, KL and TV need one
    reference = dataset if dataset.has_log_prob else None
    ev = grid_evaluation(energy, reference, test, bounds=(-5.0, 5.0), resolution=256)
    return {"loss": label, "dataset": dataset_name, "steps": steps, "seed": seed,
            "recipe": recipe, "status": ev.status, "nll": ev.nll, "data_nll": ev.data_nll,
            "gap": ev.nll_gap, "kl": ev.kl, "tv": ev.tv, "outside": ev.outside_mass,
            "outside_3x": ev.outside_mass_3x, "far_min_energy": ev.far_field.min_energy[-1],
            "far_radius": ev.far_field.radii[-1],
            "data_max_energy": ev.far_field.reference_energy, "seconds": seconds}


def _figure(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _hidden(widths: list[int]) -> str:
    """``[128, 128, 128, 128]`` as ``128x4``; mixed widths as ``64-128``."""
    if widths and len(set(widths)) == 1:
        return f"{widths[0]}x{len(widths)}"
    return "-".join(str(w) for w in widths) or "none"


def markdown_rows(rows: list[dict]) -> list[str]:
    """The table printed by ``main``: one row per run, "not normalisable" where it is not."""
    lines = ["| data set | loss | recipe | test NLL | data NLL | gap | KL(data‖model) | TV | "
             "mass outside box | outside 3x box | min E at r=1000 / max E on data | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = (_figure(r["gap"]) if r["gap"] is not None or r["status"] == "normalisable"
               else "not normalisable")
        lines.append(
            f"| {r['dataset']} | {r['loss']} | {r['recipe']} | {_figure(r['nll'])} | "
            f"{_figure(r['data_nll'])} | "
            f"{gap} | {_figure(r['kl'])} | {_figure(r['tv'])} | {r['outside']:.1e} | "
            f"{r['outside_3x']:.1e} | {r['far_min_energy']:.4g} / {r['data_max_energy']:.3g} | "
            f"{r['seconds']:.0f} |")
    return lines


def _literals(items: list[str]) -> dict:
    """``NAME=VALUE`` items as a dict, each value read as a Python literal."""
    found = {}
    for item in items:
        name, _, value = item.partition("=")
        found[name] = ast.literal_eval(value)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--losses", nargs="*", default=list(LOSSES))
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS),
                        choices=ALL_DATASETS, help="default: the three with a known density")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: the trainer's)")
    parser.add_argument("--ema", type=float, help="evaluate an EMA of the weights, this decay")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a loss parameter (a Python literal), e.g. alpha=0.0")
    parser.add_argument("--model-param", action="append", default=[], metavar="NAME=VALUE",
                        help="override an mlp parameter of every loss's recipe, e.g. "
                             "confine=False or hidden=[128,128]")
    parser.add_argument("--test-seed", type=int,
                        help="seed of the test points (default: 10000 + --seed)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--peers", action="store_true",
                        help="also train TorchEBM's and ebmkit's CD/PCD (see the docstring)")
    args = parser.parse_args()
    overrides, model_kw = _literals(args.param), _literals(args.model_param)
    trainer_kw = {k: v for k, v in (("lr", args.lr), ("ema", args.ema)) if v is not None}
    pairs = [(loss, ds) for ds in args.datasets for loss in args.losses]
    peer_jobs = []
    if args.peers:
        from peers import PEERS, SETTINGS, peer_problem

        for peer, (*_, peer_losses) in PEERS.items():
            problem = peer_problem(peer)
            if problem is not None:
                print(problem)
                continue
            peer_jobs += [(peer, loss, ds) for ds in args.datasets for loss in args.losses
                          if loss in peer_losses]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, loss, ds, args.steps, args.seed, overrides, trainer_kw,
                               args.test_seed, model_kw) for loss, ds in pairs]
        peer_futures = [pool.submit(run_peer, peer, loss, ds, args.steps, args.seed, args.lr,
                                    args.test_seed) for peer, loss, ds in peer_jobs]
        rows = [f.result() for f in futures]
        for (peer, loss, ds), future in zip(peer_jobs, peer_futures, strict=True):
            try:
                rows.append(future.result())
            except Exception as error:  # noqa: BLE001 - a failing peer must not stop the rest
                print(f"{peer}:{loss} on {ds} failed: {error!r}; skipping it")
    print(f"{args.steps} steps, batch 256, mlp(2) of each loss's recipe {model_kw}, seed "
          f"{args.seed}; grid 256x256 on [-5, 5]^2 plus rings to 81x; 20,000 test points; "
          f"loss overrides {overrides} {trainer_kw}")
    print("\n".join(markdown_rows(rows)))
    if peer_jobs:
        lr = 3e-3 if args.lr is None else args.lr
        print(f"\nPeers: plain MLP 2-128-128-1 SiLU (no wall), same initial weights and batches,"
              f" Adam lr {lr}, Langevin step 0.01 with sqrt(2 * 0.01) noise, no EMA:")
        for name in dict.fromkeys(f"{peer}:{loss}" for peer, loss, _ in peer_jobs):
            print(f"- {name}: {SETTINGS[name]}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
