"""Simulation-free generative models on the 2-D data sets, judged on one scale (issue #23).

For each method (``flow_matching``, ``equilibrium_matching``, ``energy_matching``) and data
set (``eight_gaussians``, ``checkerboard``, ``rings``) it trains

- **ebmcore**: the run recipe ``ebmcore train --dataset D --loss M`` starts from
  (``ebmcore.config.defaults_for(D, M)``: the loss's recipe and any data-set tuning), with
  :class:`ebmcore.train.Trainer` on one thread;
- **TorchEBM 0.8.9** (``--libraries torchebm``): its ``FlowMatchingLoss``,
  ``EquilibriumMatchingLoss`` or ``EnergyMatchingLoss`` at their defaults, on the same data
  set, network (the same model class, width and initial weights as ebmcore's recipe), steps,
  batch size, Adam learning rate and weight average (EMA) as the ebmcore run, in a plain
  loop (TorchEBM's energy matching has no phase switch: at its defaults the contrastive
  term, 200 Langevin steps per training step, runs from the first step, which makes it the
  slowest row by far);

and judges every model the same way:

- **NLL gap** (nats): a flow model's exact negative log-likelihood on held-out points (the
  probability-flow ODE by RK4 with the exact divergence,
  :func:`ebmcore.evaluation.likelihood.flow_log_likelihood`) minus the data set's own NLL on
  the same points; with ``--check-convergence`` the first points again with twice the RK4
  steps (the difference is printed). An energy (energy matching) gets the whole-plane NLL of
  its density (``exp(-E)`` of ebmcore's, ``exp(-V / eps_max)`` of TorchEBM's potential) by
  quadrature (:func:`ebmcore.evaluate.grid_evaluation`, as
  ``benchmarks/training_quality.py``). Equilibrium matching's field is time-free and has no
  flow likelihood ("—").
- **TV / floor**: the total variation between a histogram (100 x 100 cells over the data
  set's evaluation box) of ``--tv-samples`` model samples (a million by default) and the exact
  cell probabilities, over the same figure for as many exact data samples
  (:func:`ebmcore.evaluation.sample_metrics.streamed_histogram_tv`); 1 is as good as a
  finite sample can be. Flow and equilibrium models are sampled by the run's flow sampler;
  energy matching's energies get the quadrature's figures only.

It prints a markdown table (method, data set, library, NLL gap, TV / floor, training
seconds). Torch runs on one thread; runs go one at a time. Timings are wall-clock on
whatever machine runs it: compare them only within one table.

Run:  python benchmarks/generative.py [--quick] [--datasets rings ...]
      [--methods flow_matching ...] [--libraries ebmcore torchebm] [--set train.steps=3000]
      [--tv-samples 1000000] [--check-convergence] [--json out.json]

``--quick`` trains 2,000 steps and scores 500 points and 100,000 samples (a smoke run, not
the figures of the docs). ``--set`` overrides ebmcore's recipe (dotted keys, Python
literals; ``loss.<param>``, ``model.<param>``, ``train.<key>``), for ablations; TorchEBM's
runs follow the resolved steps, batch, learning rate, EMA and network.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import math
import time
from typing import Any

METHODS = ("flow_matching", "equilibrium_matching", "energy_matching")
DATASETS = ("eight_gaussians", "checkerboard", "rings")
LIBRARIES = ("ebmcore", "torchebm")


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["train.steps=3000", "loss.coupling='exact_ot'"]`` as ``{dotted key: value}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key.strip()] = text
    return out


def run_config(dataset: str, method: str, sets: dict[str, Any]) -> dict[str, Any]:
    """The resolved run configuration of ``ebmcore train --dataset D --loss M --set ...``."""
    from ebmcore.config import defaults_for

    config = copy.deepcopy(defaults_for(dataset, method))
    for key, value in sets.items():
        section, _, name = key.partition(".")
        if section in ("loss", "model", "sampler", "dataset"):
            config[section].setdefault("params", {})[name] = value
        elif section in ("train", "evaluate", "sample"):
            config.setdefault(section, {})[name] = value
        else:
            raise SystemExit(f"--set {key}: expected loss./model./sampler./train./evaluate.")
    return config


def build(config: dict[str, Any]) -> dict[str, Any]:
    """Seed and build the run's components as ``ebmcore train`` does."""
    import torch

    from ebmcore.runs.build import build_training

    torch.manual_seed(int(config.get("seed", 0)))
    return build_training(config)


def train_ebmcore(built: dict[str, Any]) -> tuple[Any, float]:
    """Train the built run with the Trainer; return the model to judge and the seconds."""
    from ebmcore.train import Trainer

    train = dict(built["config"]["train"])
    kwargs = {k: train[k] for k in ("lr", "grad_clip", "ema") if k in train}
    trainer = Trainer(built["model"], built["loss"], data=built["dataset"],
                      steps=int(train["steps"]), batch_size=int(train["batch_size"]),
                      log_every=1000, seed=int(built["config"].get("seed", 0)), threads=1,
                      **kwargs)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    model = trainer.ema_model or built["model"]
    return model.eval(), seconds


def torchebm_loss(method: str, model: Any) -> Any:
    """TorchEBM 0.8.9's loss of ``method`` at its defaults, around ``model``."""
    from torchebm import losses

    if method == "flow_matching":
        return losses.FlowMatchingLoss(model=model)
    if method == "equilibrium_matching":
        return losses.EquilibriumMatchingLoss(model=model)
    return losses.EnergyMatchingLoss(model=model)


def train_torchebm(built: dict[str, Any], method: str) -> tuple[Any, float]:
    """Train TorchEBM's loss on ebmcore's network (same initial weights), data, steps,
    batch, learning rate and EMA, in a plain loop; return the model as ebmcore reads it."""
    import torch

    from ebmcore.field import Field
    from ebmcore.training.ema import EMA

    model = built["model"]
    train = built["config"]["train"]
    seed = int(built["config"].get("seed", 0))
    torch.manual_seed(seed)
    net = _sign_adapter(model, method)
    loss_fn = torchebm_loss(method, net)
    opt = torch.optim.Adam(model.parameters(), lr=float(train["lr"]))
    ema = EMA(model, float(train["ema"])) if train.get("ema") else None
    data = built["dataset"]
    gen = torch.Generator().manual_seed(seed)
    steps, batch = int(train["steps"]), int(train["batch_size"])
    started = time.perf_counter()
    for _ in range(steps):
        x = data.sample(batch, gen).to(torch.float32)
        loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(train["grad_clip"]))
        opt.step()
        if ema is not None:
            ema.update()
    seconds = time.perf_counter() - started
    trained = (ema.model if ema is not None else model).eval()
    if method == "equilibrium_matching" and isinstance(trained, Field):
        return _NegatedField(trained), seconds
    return trained, seconds


def _sign_adapter(model: Any, method: str) -> Any:
    """The callable TorchEBM's loss trains: the network itself for a field, the energy's
    scalar for energy matching."""
    if method != "energy_matching":
        return model
    import torch
    from torchebm.core import BaseModel

    class _Scalar(BaseModel):
        """ebmcore's energy as a TorchEBM model (its ``gradient`` comes from autograd)."""

        def __init__(self, energy: Any) -> None:
            super().__init__()
            self.energy = energy

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.energy(x)

    return _Scalar(model)


def _negated_field_class() -> type:
    from ebmcore.field import Field

    class NegatedField(Field):
        """``-f``: TorchEBM's equilibrium field regresses ``-c(t) u_t``."""

        def __init__(self, inner: Field) -> None:
            super().__init__()
            self.inner = inner
            self.event_shape = inner.event_shape

        def forward(self, x: Any, t: Any) -> Any:
            return -self.inner(x, t)

    return NegatedField


def _NegatedField(inner: Any) -> Any:  # noqa: N802 - a factory standing for a class
    return _negated_field_class()(inner)


def judge_flow(model: Any, built: dict[str, Any], method: str, args: argparse.Namespace
               ) -> dict[str, Any]:
    """NLL gap (flow matching) and histogram TV of a field sampled by the run's sampler."""
    import torch

    import ebmcore
    from ebmcore.evaluation.likelihood import flow_log_likelihood
    from ebmcore.evaluation.sample_metrics import streamed_histogram_tv
    from ebmcore.runs.fields import flow_sampler

    dataset, loss, config = built["dataset"], built["loss"], built["config"]
    settings = loss.flow_settings()
    out: dict[str, Any] = {}
    if method == "flow_matching":
        test = dataset.sample(args.points, torch.Generator().manual_seed(10_000))
        true_nll = -float(dataset.log_prob(test.double()).mean())
        interpolant = settings.get("interpolant")
        lik = flow_log_likelihood(model, test.float(),
                                  ebmcore.create("integrator", "rk4", steps=args.ode_steps),
                                  interpolant=interpolant,
                                  prediction=settings.get("prediction", "velocity"))
        out["gap"] = -lik.log_likelihood - true_nll
        out["gap_se"] = float((lik.per_point + dataset.log_prob(test.double())).std()
                              / math.sqrt(test.shape[0]))
        if args.check_convergence:
            k = min(500, test.shape[0])
            fine = flow_log_likelihood(model, test[:k].float(),
                                       ebmcore.create("integrator", "rk4",
                                                      steps=2 * args.ode_steps),
                                       interpolant=interpolant,
                                       prediction=settings.get("prediction", "velocity"))
            out["convergence"] = float(fine.per_point.mean() - lik.per_point[:k].mean())
    if args.tv_samples > 0:
        sampler = flow_sampler(config["sampler"], settings)
        gen = torch.Generator().manual_seed(20_000)

        def draw(k: int) -> torch.Tensor:
            with torch.no_grad():
                return sampler.sample(model, k, generator=gen).samples

        started = time.perf_counter()
        tv = streamed_histogram_tv(draw, dataset, n=args.tv_samples, chunk=50_000,
                                   generator=torch.Generator().manual_seed(30_000))
        out.update(tv=tv.tv, floor=tv.floor, tv_ratio=tv.ratio,
                   sample_seconds=time.perf_counter() - started)
    return out


def _Scaled(energy: Any, temperature: float) -> Any:  # noqa: N802 - a factory
    """``E / temperature`` as an :class:`ebmcore.Energy`."""
    from ebmcore.energy import Energy

    class Scaled(Energy):
        """An energy divided by a temperature."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = energy
            self.event_shape = getattr(energy, "event_shape", None)

        def forward(self, x: Any) -> Any:
            return self.inner(x) / temperature

    return Scaled()


def judge_energy(model: Any, built: dict[str, Any], library: str, args: argparse.Namespace
                 ) -> dict[str, Any]:
    """Whole-plane NLL gap of the model's density by quadrature, as training_quality.py
    reports: ``exp(-E)`` of ebmcore's energy (its ``energy_matching`` trains ``E = V /
    eps_max``, so the density is the model's own), ``exp(-V / eps_max)`` of the potential
    ``V`` TorchEBM's ``EnergyMatchingLoss`` trains."""
    import torch

    from ebmcore.evaluate import grid_evaluation
    from ebmcore.field import energy_of

    energy = energy_of(model)
    temperature = 1.0
    if library == "torchebm":
        # TorchEBM's Langevin negatives sample exp(-V / epsilon_max): that is its density
        temperature = float(built["loss"].epsilon_max)
        energy = _Scaled(energy, temperature)
    dataset = built["dataset"]
    test = dataset.sample(20_000, generator=torch.Generator().manual_seed(10_000))
    ev = grid_evaluation(energy, dataset, test, bounds=(-5.0, 5.0), resolution=256)
    return {"gap": ev.nll_gap, "status": ev.status, "grid_tv": ev.tv,
            "outside": ev.outside_mass, "temperature": temperature}


def run_one(library: str, method: str, dataset: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    """Train and judge one (library, method, data set)."""
    config = run_config(dataset, method, args.sets)
    built = build(config)
    if library == "ebmcore":
        model, seconds = train_ebmcore(built)
    else:
        model, seconds = train_torchebm(built, method)
    started = time.perf_counter()
    if method == "energy_matching":
        scores = judge_energy(model, built, library, args)
    else:
        scores = judge_flow(model, built, method, args)
    train = built["config"]["train"]
    return {"library": library, "method": method, "dataset": dataset,
            "steps": int(train["steps"]), "batch": int(train["batch_size"]),
            "train_seconds": seconds, "judge_seconds": time.perf_counter() - started,
            "loss": built["config"]["loss"], "model": built["config"]["model"], **scores}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for the table, or a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of the rows."""
    lines = ["| method | data set | library | NLL gap (nats) | TV / floor | TV | floor "
             "| train s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['dataset']} | {r['library']} | "
                     f"{fmt(r.get('gap'))} | {fmt(r.get('tv_ratio'), 2)} | "
                     f"{fmt(r.get('tv'), 4)} | {fmt(r.get('floor'), 4)} | "
                     f"{r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--points", type=int, default=2000,
                        help="held-out points of the likelihood (default 2000)")
    parser.add_argument("--ode-steps", type=int, default=100,
                        help="RK4 steps of the likelihood (default 100)")
    parser.add_argument("--tv-samples", type=int, default=1_000_000)
    parser.add_argument("--check-convergence", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.sets = parse_sets(args.sets)
    if args.quick:
        args.sets.setdefault("train.steps", 2000)
        args.points = min(args.points, 500)
        args.tv_samples = min(args.tv_samples, 100_000)

    import numba  # noqa: F401  - before setting threads: numba can reset them
    import torch

    torch.set_num_threads(1)
    rows = []
    started = time.perf_counter()
    for method in args.methods:
        for dataset in args.datasets:
            for library in args.libraries:
                row = run_one(library, method, dataset, args)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items()
                                  if k not in ("loss", "model")}), flush=True)
                if args.json:
                    with open(args.json, "w") as fh:
                        json.dump(rows, fh, indent=1, default=str)
    print()
    print(table(rows))
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
