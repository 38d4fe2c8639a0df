"""Simulation-free generative models on the 2-D data sets, judged on one scale (issue #23).

For each method (``flow_matching``, ``equilibrium_matching``, ``energy_matching``) and data
set (``eight_gaussians``, ``checkerboard``, ``rings``) it trains

- **ebmcore**: the run recipe ``ebmcore train --dataset D --loss M`` starts from
  (``ebmcore.config.defaults_for(D, M)``: the loss's recipe and any data-set tuning), with
  :class:`ebmcore.train.Trainer` on one thread;
- **TorchEBM 0.8.9** (``--libraries torchebm``): its ``FlowMatchingLoss``,
  ``EquilibriumMatchingLoss`` or ``EnergyMatchingLoss`` at their defaults (or as
  ``--torchebm-set`` changes them), on the same data set, network (the same model class,
  width and initial weights as ebmcore's recipe), steps, batch size, Adam learning rate (and
  its schedule, ``train.lr_schedule``) and weight average (EMA) as the ebmcore run, in a
  plain loop. Energy matching is trained the
  way TorchEBM documents it: ``lambda_cd = 0`` (optimal-transport flow only) until the
  ebmcore recipe's ``switch_step``, then the loss's own ``lambda_cd`` (2.0 at its
  defaults), with its own Langevin negatives. The potential it trains is ``V = eps_max * E``
  of ebmcore's network ``E`` (with its wall fitted to the data as the Trainer fits it),
  ebmcore's parametrisation, so both libraries' densities are ``exp(-E)`` of one network.
  Its default coupling, exact minibatch OT by an auction solver (about 0.3 s a step at batch
  256 on one thread), is solved instead by scipy's ``linear_sum_assignment``: the same
  assignment problem, solved exactly, in milliseconds;

and judges every model the same way:

- **NLL gap** (nats): a flow model's exact negative log-likelihood on held-out points (the
  probability-flow ODE by RK4 with the exact divergence,
  :func:`ebmcore.evaluation.likelihood.flow_log_likelihood`) minus the data set's own NLL on
  the same points; with ``--check-convergence`` the first points again with twice the RK4
  steps (the difference is printed). An energy (energy matching) gets the whole-plane NLL of
  its density (``exp(-E)``, that is ``exp(-V / eps_max)`` of the potential ``V = eps_max *
  E`` both libraries train) by quadrature (:func:`ebmcore.evaluate.grid_evaluation`, as
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
      [--torchebm-set lambda_cd=100.0 ...] [--tv-samples 1000000] [--check-convergence]
      [--json out.json]

``--quick`` trains 2,000 steps and scores 500 points and 100,000 samples (a smoke run, not
the figures of the docs). ``--set`` overrides ebmcore's recipe (dotted keys, Python
literals; ``loss.<param>``, ``model.<param>``, ``train.<key>``), for ablations; TorchEBM's
runs follow the resolved steps, batch, learning rate, EMA, network and (energy matching)
``loss.switch_step``. ``--torchebm-set`` passes keyword arguments to TorchEBM's loss (the
same syntax without a section: ``--torchebm-set lambda_cd=100.0 n_langevin_steps=20``).
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
    kwargs = {k: train[k] for k in ("lr", "grad_clip", "ema", "lr_schedule") if k in train}
    trainer = Trainer(built["model"], built["loss"], data=built["dataset"],
                      steps=int(train["steps"]), batch_size=int(train["batch_size"]),
                      log_every=1000, seed=int(built["config"].get("seed", 0)), threads=1,
                      **kwargs)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    model = trainer.ema_model or built["model"]
    return model.eval(), seconds


def torchebm_loss(method: str, model: Any, options: dict[str, Any] | None = None) -> Any:
    """TorchEBM 0.8.9's loss of ``method`` around ``model``, at its defaults but for the
    keyword arguments ``options`` (``--torchebm-set``). Energy matching's default exact OT
    coupling is solved by scipy (:func:`_exact_ot_coupling`) unless ``options`` names one."""
    from torchebm import losses

    options = dict(options or {})
    if method == "flow_matching":
        return losses.FlowMatchingLoss(model=model, **options)
    if method == "equilibrium_matching":
        return losses.EquilibriumMatchingLoss(model=model, **options)
    options.setdefault("coupling", _exact_ot_coupling())
    return losses.EnergyMatchingLoss(model=model, **options)


def _exact_ot_coupling() -> Any:
    """TorchEBM's ``ExactOTCoupling`` (its energy matching's default, ``"ot"``) with the
    assignment solved by scipy's ``linear_sum_assignment`` instead of its auction: the same
    exact minibatch OT, a hundred times faster on one CPU thread."""
    import torch
    from scipy.optimize import linear_sum_assignment
    from torchebm.couplings import ExactOTCoupling

    class ScipyExactOT(ExactOTCoupling):
        """Exact minibatch OT by the Hungarian method (scipy)."""

        def _solve(self, cost: torch.Tensor, generator: Any = None) -> torch.Tensor:
            rows, cols = linear_sum_assignment(cost.detach().cpu().double().numpy())
            perm = torch.empty(cost.shape[0], dtype=torch.long)
            perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
            return perm.to(cost.device)

    return ScipyExactOT()


def fit_wall(model: Any, built: dict[str, Any]) -> None:
    """Fit an energy's confining wall to the data as :class:`ebmcore.train.Trainer` does
    before its first step (the same sample), so both libraries start from one network."""
    import torch

    from ebmcore.energy import Energy
    from ebmcore.training.batches import CONFINEMENT_SAMPLE

    if isinstance(model, Energy) and not model.confinement_fitted:
        generator = torch.Generator().manual_seed(int(built["config"].get("seed", 0)) + 2)
        model.fit_confinement(built["dataset"].sample(CONFINEMENT_SAMPLE, generator=generator))


def train_torchebm(built: dict[str, Any], method: str,
                   options: dict[str, Any] | None = None) -> tuple[Any, float]:
    """Train TorchEBM's loss on ebmcore's network (same initial weights), data, steps,
    batch, learning rate and EMA, in a plain loop; return the model as ebmcore reads it.

    Energy matching runs TorchEBM's two phases: ``lambda_cd = 0`` before the ebmcore
    recipe's ``switch_step`` (never switched when it is ``None``), then the loss's own
    ``lambda_cd``."""
    import torch

    from ebmcore.field import Field
    from ebmcore.training.ema import EMA

    model = built["model"]
    train = built["config"]["train"]
    seed = int(built["config"].get("seed", 0))
    fit_wall(model, built)
    torch.manual_seed(seed)
    net = _sign_adapter(model, method)
    loss_fn = torchebm_loss(method, net, options)
    switch, contrastive = None, 0.0
    if method == "energy_matching":
        net.scale = float(loss_fn.epsilon_max)  # V = eps_max * E
        switch, contrastive = built["loss"].switch_step, float(loss_fn.lambda_cd)
        loss_fn.lambda_cd = 0.0
    opt = torch.optim.Adam(model.parameters(), lr=float(train["lr"]))
    ema = EMA(model, float(train["ema"])) if train.get("ema") else None
    data = built["dataset"]
    gen = torch.Generator().manual_seed(seed)
    steps, batch = int(train["steps"]), int(train["batch_size"])
    started = time.perf_counter()
    for step in range(steps):
        if switch is not None and step == switch:
            loss_fn.lambda_cd = contrastive
        x = data.sample(batch, gen).to(torch.float32)
        loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(train["grad_clip"]))
        if train.get("lr_schedule") == "cosine":  # as the Trainer's schedule
            for group in opt.param_groups:
                group["lr"] = 0.5 * float(train["lr"]) * (1 + math.cos(math.pi * step / steps))
        opt.step()
        if ema is not None:
            ema.update()
        if (step + 1) % 500 == 0:
            print(f"torchebm {method} step {step + 1}: loss {float(loss.detach()):.4g}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    seconds = time.perf_counter() - started
    trained = (ema.model if ema is not None else model).eval()
    if method == "equilibrium_matching" and isinstance(trained, Field):
        return _NegatedField(trained), seconds
    return trained, seconds


def _sign_adapter(model: Any, method: str) -> Any:
    """The callable TorchEBM's loss trains: the network itself for a field, the potential
    ``V = scale * E`` of the energy ``E`` for energy matching (``scale`` is set to the
    loss's ``epsilon_max``, so ``exp(-V / eps_max)`` is ``exp(-E)``, as in ebmcore)."""
    if method != "energy_matching":
        return model
    import torch
    from torchebm.core import BaseModel

    class _Scalar(BaseModel):
        """``scale`` times ebmcore's energy as a TorchEBM model (gradient by autograd)."""

        def __init__(self, energy: Any) -> None:
            super().__init__()
            self.energy = energy
            self.scale = 1.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * self.energy(x)

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


def judge_energy(model: Any, built: dict[str, Any], args: argparse.Namespace
                 ) -> dict[str, Any]:
    """Whole-plane NLL gap of the model's density ``exp(-E)`` by quadrature, as
    training_quality.py reports (both libraries train ``V = eps_max * E``, whose Boltzmann
    density ``exp(-V / eps_max)`` that is)."""
    import torch

    from ebmcore.evaluate import grid_evaluation
    from ebmcore.field import energy_of

    dataset = built["dataset"]
    energy = energy_of(model)
    test = dataset.sample(20_000, generator=torch.Generator().manual_seed(10_000))
    ev = grid_evaluation(energy, dataset, test, bounds=(-5.0, 5.0), resolution=256)
    # the s.e. of the mean per-point difference of the two log-likelihoods (log Z is common)
    with torch.no_grad():
        diff = energy(test).double() + dataset.log_prob(test.double())
    return {"gap": ev.nll_gap, "gap_se": float(diff.std() / math.sqrt(test.shape[0])),
            "status": ev.status, "grid_tv": ev.tv, "outside": ev.outside_mass}


def run_one(library: str, method: str, dataset: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    """Train and judge one (library, method, data set)."""
    config = run_config(dataset, method, args.sets)
    built = build(config)
    if library == "ebmcore":
        model, seconds = train_ebmcore(built)
    else:
        model, seconds = train_torchebm(built, method, args.torchebm_sets)
    started = time.perf_counter()
    if method == "energy_matching":
        scores = judge_energy(model, built, args)
    else:
        scores = judge_flow(model, built, method, args)
    train = built["config"]["train"]
    return {"library": library, "method": method, "dataset": dataset,
            "steps": int(train["steps"]), "batch": int(train["batch_size"]),
            "train_seconds": seconds, "judge_seconds": time.perf_counter() - started,
            "loss": (built["config"]["loss"] if library == "ebmcore" else
                     {"torchebm": args.torchebm_sets}), "model": built["config"]["model"],
            **scores}


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
                     f"{fmt(r.get('gap'))} ± {fmt(r.get('gap_se'))} | "
                     f"{fmt(r.get('tv_ratio'), 2)} | "
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
    parser.add_argument("--torchebm-set", dest="torchebm_sets", nargs="+", default=[],
                        help="keyword arguments of TorchEBM's loss, KEY=VALUE")
    parser.add_argument("--points", type=int, default=2000,
                        help="held-out points of the likelihood (default 2000)")
    parser.add_argument("--ode-steps", type=int, default=100,
                        help="RK4 steps of the likelihood (default 100)")
    parser.add_argument("--tv-samples", type=int, default=1_000_000)
    parser.add_argument("--check-convergence", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.sets = parse_sets(args.sets)
    args.torchebm_sets = parse_sets(args.torchebm_sets)
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
