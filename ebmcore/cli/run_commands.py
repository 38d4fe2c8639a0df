"""Sub-commands that do the work: ``train``, ``sample``, ``evaluate`` and ``demo``."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ebmcore.config import (
    AIS_CHAINS,
    AIS_TEMPS,
    IMAGE_RECIPE,
    apply_overrides,
    check_train_config,
    complete_run,
    load_toml,
    signature_parameter,
)
from ebmcore.launch import DEFAULT_TIMEOUT, DIST_BACKENDS

#: Where ``ebmcore demo`` writes when no ``--out`` is given (``-2``, ``-3``... on reruns).
DEMO_FOLDER = "ebmcore-demo"

#: The step size ``ebmcore sample`` starts an adapting sampler (MALA, HMC) from when none is
#: given: dual averaging tunes it during burn-in, so it need only be of the right order for
#: targets of unit scale (on double_well, starts of 0.01, 0.1 and 1 all reached acceptance
#: 0.56-0.57 after 200 burn-in steps).
DEFAULT_START_STEP_SIZE = 0.1

#: Exit statuses of a training run stopped by a signal (128 + the signal's number).
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return _int_at_least(text, 0, "a non-negative integer")


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive, finite number, got {text}")
    return value


def add_commands(subparsers: Any) -> None:
    """Attach ``train``, ``sample``, ``evaluate`` and ``demo`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser(
        "train", help="train an energy on a data set; writes a run folder",
        description="Train a model on a data set. With no arguments: mlp on eight_gaussians "
                    "with pcd and langevin. Components are chosen by name; parameters with "
                    "--set section.key=value (e.g. --set sampler.step_size=0.01).")
    _add_component_options(p, ("dataset", "model", "loss", "sampler"))
    _add_common_run_options(p)
    p.add_argument("--config", type=Path, help="replay a run from its config.toml")
    p.add_argument("--resume", type=Path, metavar="RUN_FOLDER",
                   help="continue an interrupted run from its newest readable checkpoint "
                        "(only --quiet, --nproc and --dist-* may be added; --nproc may "
                        "differ from the run's: its chains are re-split)")
    p.add_argument("--steps", type=_positive_int,
                   help="training steps (same as --set train.steps=N)")
    p.add_argument("--device", help="cpu or cuda")
    _add_distributed_options(p, "train with DistributedDataParallel-style gradient averaging; "
                                "the global batch (train.batch_size) is split over the "
                                "processes")
    p.set_defaults(handler=cmd_train)

    p = subparsers.add_parser(
        "demo", help="train, sample, evaluate and plot on built-in defaults",
        description="The README's first command: trains mlp on eight_gaussians, samples it, "
                    "evaluates it and writes plots and metrics.")
    _add_common_run_options(p, default_out="ebmcore-demo")
    p.add_argument("--steps", type=_positive_int, help="training steps (default 2000)")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="change a default, e.g. train.compile=true (as for train)")
    p.set_defaults(handler=cmd_demo)

    p = subparsers.add_parser(
        "sample", help="sample an energy component or a trained model",
        description="Sample an energy by name (--energy gaussian --set energy.mean=[0,0]) or a "
                    "trained model (--checkpoint run/model.pt) with any sampler and backend.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--energy", help="energy component name")
    source.add_argument("--checkpoint", type=Path, help="model.pt written by ebmcore train")
    p.add_argument("--sampler", default="mala", help="sampler name (default: mala)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="energy.* or sampler.* parameters")
    p.add_argument("--chains", type=_positive_int, default=1000, help="number of chains")
    p.add_argument("--steps", type=_positive_int, default=1000, help="steps after burn-in")
    p.add_argument("--burn-in", type=_non_negative_int, default=500,
                   help="adaptation steps, not kept")
    p.add_argument("--thin", type=_positive_int, default=1, help="keep every N-th step")
    p.add_argument("--trace-chains", type=_positive_int, default=None, metavar="N",
                   help="record the kept steps of at most N chains, evenly spread, for R-hat, "
                        "ESS and the chain plots (default 1000)")
    p.add_argument("--save-trajectory", action="store_true",
                   help="also write every chain's kept steps to trajectory.npy, streamed to "
                        "disk as the chains run (torch backend)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "numba", "cuda"])
    p.add_argument("--dim", type=_positive_int,
                   help="dimension of the energy (its dim parameter, same as --set energy.dim=D)")
    p.add_argument("--init-scale", type=_positive_float, default=1.0,
                   help="initial points are init_scale * N(0, I)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--out", type=Path, help="output folder (default: runs/sample-<time>)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_distributed_options(p, "split the chains over the processes, each with its own random "
                                "stream; samples and diagnostics are gathered")
    p.set_defaults(handler=cmd_sample)

    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained model: NLL, KL, TV, AIS bounds of log Z, MMD, KSD")
    p.add_argument("checkpoint", type=Path, help="model.pt or the run folder")
    p.add_argument("--n-test", type=_positive_int, default=20000, help="held-out points")
    image_ais = IMAGE_RECIPE["evaluate"]
    p.add_argument("--ais-chains", type=_positive_int,
                   help=f"AIS chains (default {AIS_CHAINS}; an image model's recipe: "
                        f"{image_ais['ais_chains']})")
    p.add_argument("--ais-temps", type=_positive_int,
                   help=f"AIS temperatures (default {AIS_TEMPS}; an image model's recipe: "
                        f"{image_ais['ais_temps']})")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, help="also write the JSON report to this file")
    p.set_defaults(handler=cmd_evaluate)


def _add_distributed_options(p: argparse.ArgumentParser, what: str) -> None:
    group = p.add_argument_group(
        "several processes (torch.distributed)",
        f"--nproc N starts N processes on this machine through torch.distributed.run (what "
        f"torchrun runs); or start the command itself under torchrun --nproc-per-node N "
        f"[--nnodes ...] -m ebmcore ..., without --nproc. Either way: {what}; rank 0 writes "
        f"the output folder.")
    group.add_argument("--nproc", type=_positive_int, metavar="N",
                       help="processes to run on this machine (1: this one alone)")
    group.add_argument("--dist-backend", choices=DIST_BACKENDS, default="auto",
                       help="process-group backend (auto: nccl on cuda, else gloo)")
    group.add_argument("--dist-timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS",
                       help=f"a rank waiting longer than this for the others (one died or "
                            f"hangs) ends the job with an error (default {DEFAULT_TIMEOUT:g})")


@contextlib.contextmanager
def _joined(args: argparse.Namespace, device: str) -> Iterator[Any]:
    """Join the job this process was launched into (a group of one when it was not).

    Ranks other than 0 turn quiet: rank 0 prints the progress, the messages and the summary.
    """
    from ebmcore.launch import joined

    with joined(device, args.dist_backend, args.dist_timeout) as ranks:
        if not ranks.is_main:
            args.quiet = True
            warnings.filterwarnings("ignore")  # rank 0 gives each warning once
        yield ranks


def _check_before_launch(config: dict[str, Any], nproc: int) -> None:
    """Refuse, once and before any process starts, a run that every worker would refuse."""
    from ebmcore.distributed import batch_share

    check_train_config(config)
    batch_share(int((config.get("train") or {}).get("batch_size", 0)), nproc)


def _launch(args: argparse.Namespace, out: Path | None) -> int:
    """Run this command line in ``--nproc`` processes through torch.distributed.run.

    The workers get the same arguments, plus ``--out`` when the folder was chosen here (a
    default folder name holds the time, which the workers must not each pick anew).
    """
    from ebmcore.launch import launch

    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    if out is not None and args.out is None:
        argv += ["--out", str(out)]
    return launch(argv, args.nproc)


def _add_component_options(p: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        p.add_argument(f"--{kind}", help=f"{kind} component name")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="set a parameter, e.g. model.hidden=[64,64] or train.lr=0.001")


def _add_common_run_options(p: argparse.ArgumentParser, default_out: str | None = None) -> None:
    p.add_argument("--out", type=Path,
                   help="run folder" + (f" (default: {default_out}, or {default_out}-N when "
                                        f"that already holds a run)" if default_out else
                                        " (default: runs/<time>-<dataset>-<loss>)"))
    p.add_argument("--seed", type=_non_negative_int, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")


def _log(args: argparse.Namespace) -> Any:
    return (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    given = {} if getattr(args, "config", None) is None else load_toml(args.config)
    # an image data set or a loss with a recipe (named on the command line or in the file)
    # starts from its recipe
    config = complete_run(given, getattr(args, "dataset", None), getattr(args, "loss", None))
    for kind in ("dataset", "model", "loss", "sampler"):
        name = getattr(args, kind, None)
        if name is not None and name != config[kind]["name"]:
            # a new component starts from its own defaults, not the old one's parameters
            config[kind] = {"name": name, "params": {}}
    config = apply_overrides(config, getattr(args, "overrides", []))
    if args.steps is not None:
        config = apply_overrides(config, [f"train.steps={args.steps}"])
    if args.seed is not None:
        config = apply_overrides(config, [f"seed={args.seed}"])
    if getattr(args, "device", None):
        config = apply_overrides(config, [f"device={json.dumps(args.device)}"])
    return config


def _print_summary(out: Path, metrics: dict[str, Any]) -> None:
    evaluation = metrics.get("evaluation") or {}
    for line in evaluation_lines(evaluation) + image_lines(metrics.get("image_evaluation")):
        print(line)
    runaway = metrics.get("runaway")
    if runaway:
        print(f"RUNAWAY: {runaway['quantity']} reached {runaway['value']:.4g} at step "
              f"{runaway['step']} (limit {runaway['limit']:g}); the energies grew without bound")
    sampling = metrics.get("sampling") or {}
    if sampling:
        chains = sampling["chains"]
        rhat = chains["rhat"]
        shown = (f"no R-hat ({chains.get('note', 'no finite traced chain')})" if rhat is None
                 else f"max R-hat {rhat['max']:.3f}")
        print(f"sampled {chains.get('total_chains', chains['n_chains'])} chains with backend "
              f"{sampling['backend']}: {shown} over {chains['n_chains']} traced chains")
    pictures = sorted(p.name for p in out.glob("*.png"))
    print(f"run folder: {out}")
    print(f"pictures:   {', '.join(str(out / p) for p in pictures)}")
    print(f"metrics:    {out / 'metrics.json'}")


def _share(value: float | None) -> str:
    return "unmeasurable (NaN or -inf energies)" if value is None else f"{value:.2e}"


def evaluation_lines(evaluation: dict[str, Any]) -> list[str]:
    """Summarise a grid evaluation: the likelihood figures only for a normalisable model,
    always the mass outside the box and the far-field energy against the data's."""
    if not evaluation:
        return []
    lines = []
    if not evaluation["normalisable"]:
        lines.append(f"NO LIKELIHOOD: the model is {evaluation['status']}")
    elif evaluation.get("nll") is not None:
        line = f"test NLL {evaluation['nll']:.3f} nats over the whole plane"
        if evaluation.get("data_nll") is not None:  # data sets with a known density
            line += (f" (data's own {evaluation['data_nll']:.3f}, gap "
                     f"{evaluation['nll_gap']:.3f}); KL {evaluation['kl']:.3f}; "
                     f"TV {evaluation['tv']:.3f}")
        lines.append(line)
    far = evaluation["far_field"]
    line = (f"model mass outside the box {_share(evaluation['outside_mass'])}, outside three "
            f"times the box {_share(evaluation['outside_mass_3x'])}; least energy at radius "
            f"{far['radii'][-1]:g}: {far['min_energy'][-1]:.4g}")
    if far.get("reference_energy") is not None:
        line += f" (highest on test data {far['reference_energy']:.4g})"
    lines.append(line)
    return lines


def image_lines(evaluation: dict[str, Any] | None) -> list[str]:
    """Summarise an image evaluation: the AIS bracket of the test log-likelihood beside the
    exact baselines, then class coverage and the MMD test."""
    if not evaluation:
        return []
    b = evaluation["likelihood"]
    lines = [f"test log-likelihood (AIS) between {b['lower']:.2f} ± {b['lower_stderr']:.2f} and "
             f"{b['upper']:.2f} ± {b['upper_stderr']:.2f} nats per image "
             f"({b['bits_per_dim_upper']:.3f} to {b['bits_per_dim_lower']:.3f} bits/dim)"]
    if evaluation["baselines"]:
        lines.append("exact baselines on the same split: " + "; ".join(
            f"{name} {base['log_likelihood']:.2f} nats ({base['bits_per_dim']:.3f} bits/dim)"
            for name, base in evaluation["baselines"].items()))
    cov, ref = evaluation["coverage"], evaluation["data_coverage"]
    if cov is not None:
        lines.append(f"class coverage: {cov['confident_share']:.0%} of samples classified "
                     f"with confidence (held-out images: {ref['confident_share']:.0%}), "
                     f"{cov['classes_covered']} classes, largest share {cov['max_share']:.0%}")
    if evaluation.get("mmd") is not None:
        m = evaluation["mmd"]
        lines.append(f"MMD² samples vs held-out images {m['statistic']:.5f} "
                     f"(p = {m['p_value']:.3f})")
    lines += [f"note: {note}" for note in evaluation.get("notes", [])]
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    """Train on the chosen components and write the run folder, or resume one (``--resume``).

    With ``--nproc N`` the command runs in N processes; under torchrun each worker joins the
    job (see :mod:`ebmcore.launch`).
    """
    from ebmcore.launch import should_launch
    from ebmcore.runs import prepare_output_dir, train_run

    if args.resume is not None:
        return _resume(args)
    config = _train_config(args)
    out = args.out or Path("runs") / (time.strftime("%Y%m%d-%H%M%S") +
                                      f"-{config['dataset']['name']}-{config['loss']['name']}")
    if should_launch(args.nproc):
        _check_before_launch(config, args.nproc)
        prepare_output_dir(out, overwrite=args.overwrite)
        return _launch(args, out)
    with _joined(args, str(config.get("device", "cpu"))) as ranks:
        metrics = train_run(config, out, progress=not args.quiet, log=_log(args),
                            overwrite=args.overwrite, distributed=ranks.active)
        if ranks.is_main:
            _print_summary(Path(out), metrics)
        return _exit_status(Path(out), metrics, say=ranks.is_main)


#: ``train`` options that would change the run, refused with ``--resume``: (dest, flag).
_NOT_WITH_RESUME = (("dataset", "--dataset"), ("model", "--model"), ("loss", "--loss"),
                    ("sampler", "--sampler"), ("overrides", "--set"), ("config", "--config"),
                    ("steps", "--steps"), ("device", "--device"), ("out", "--out"),
                    ("seed", "--seed"), ("overwrite", "--overwrite"))


def _resume(args: argparse.Namespace) -> int:
    """Continue the run folder ``args.resume`` as its config.toml describes."""
    from ebmcore.launch import should_launch
    from ebmcore.runs import resumable_checkpoints, resume_run

    given = [flag for dest, flag in _NOT_WITH_RESUME if getattr(args, dest, None)]
    if given:
        raise ValueError(f"--resume continues a run exactly as its config.toml describes and "
                         f"writes into its folder; it cannot be combined with "
                         f"{', '.join(given)} (only --quiet and the --nproc/--dist-* options)")
    resumable_checkpoints(args.resume)  # no folder or checkpoint: say so before anything runs
    config = load_toml(args.resume / "config.toml")
    if should_launch(args.nproc):
        _check_before_launch(config, args.nproc)
        return _launch(args, None)
    device = str(config.get("device", "cpu"))
    with _joined(args, device) as ranks:
        metrics = resume_run(args.resume, progress=not args.quiet, log=_log(args),
                             warn=lambda line: print(f"ebmcore: warning: {line}",
                                                     file=sys.stderr),
                             distributed=ranks.active)
        if metrics is None:
            if ranks.is_main:
                print(f"{args.resume}: the run is already finished; nothing to do")
            return 0
        if ranks.is_main:
            _print_summary(args.resume, metrics)
        return _exit_status(args.resume, metrics, say=ranks.is_main)


def _exit_status(out: Path, metrics: dict[str, Any], *, say: bool = True) -> int:
    """0 for a finished run; for one stopped by a signal, 128 + signal, and (with ``say``)
    how to continue it."""
    if not metrics.get("interrupted"):
        return 0
    signal_name = metrics.get("stopped_by") or "SIGINT"
    world = int(metrics.get("world_size", 1))
    if say:
        print(f"ebmcore: training stopped by {signal_name} at step "
              f"{metrics.get('steps_done')}; checkpoint {metrics.get('last_checkpoint')}; "
              f"continue with: ebmcore train --resume {out}"
              + (f" --nproc {world}" if world > 1 else ""), file=sys.stderr)
    return SIGNAL_EXIT.get(signal_name, 130)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the built-in demo: ``ebmcore train`` on its defaults into ``ebmcore-demo/``."""
    from ebmcore.runs import train_run

    args.config = None
    config = _train_config(args)
    out = args.out if args.out is not None else _free_folder(Path(DEMO_FOLDER))
    metrics = train_run(config, out, progress=not args.quiet, log=_log(args),
                        overwrite=args.overwrite)
    _print_summary(Path(out), metrics)
    return _exit_status(Path(out), metrics)


def _free_folder(base: Path) -> Path:
    """Return ``base`` if it is absent or empty, else the first free ``base-2``, ``base-3``..."""
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def cmd_sample(args: argparse.Namespace) -> int:
    """Sample an energy or a trained model and write samples, diagnostics and plots."""
    from ebmcore.launch import should_launch
    from ebmcore.runs import prepare_output_dir

    base = {"sampler": {"name": args.sampler, "params": {}}}
    if args.energy:
        base["energy"] = {"name": args.energy, "params": {}}
    config = apply_overrides(base, args.overrides)
    unexpected = set(config) - {"sampler", "energy"}
    if unexpected:
        raise ValueError(f"--set for sample takes energy.* and sampler.* keys, got "
                         f"{', '.join(sorted(unexpected))}")
    if args.checkpoint is not None and "energy" in config:
        raise ValueError("energy.* parameters apply to --energy, not to --checkpoint")
    if args.dim is not None and "energy" in config:
        _apply_dim(config["energy"], args.dim)
    out = args.out or Path("runs") / time.strftime("sample-%Y%m%d-%H%M%S")
    if should_launch(args.nproc):
        prepare_output_dir(out, overwrite=args.overwrite)
        return _launch(args, out)
    with _joined(args, args.device) as ranks:
        return _sample(args, config, out, ranks)


def _sample(args: argparse.Namespace, config: dict[str, Any], out: Path, ranks: Any) -> int:
    """Sample as ``cmd_sample`` set up, on the ranks of ``ranks``; rank 0 prints the report."""
    import torch

    from ebmcore.runs import load_energy, sample_run

    note = _default_step_size(config["sampler"], args.burn_in)
    energy = load_energy(config.get("energy"), args.checkpoint, torch.device(args.device))
    if note and not args.quiet:
        print(note, file=sys.stderr)
    settings = {"n_chains": args.chains, "n_steps": args.steps, "burn_in": args.burn_in,
                "thin": args.thin, "backend": args.backend, "dim": args.dim,
                "init_scale": args.init_scale, "save_trajectory": args.save_trajectory}
    if args.trace_chains is not None:
        settings["trace_chains"] = args.trace_chains
    report = sample_run(energy, config["sampler"], settings, out, seed=args.seed,
                        progress=not args.quiet, overwrite=args.overwrite,
                        distributed=ranks.active)
    if not ranks.is_main:
        return 0
    chains = report["chains"]
    acceptance = report["acceptance_mean"]
    if chains["rhat"] is None:
        figures = f"no R-hat or ESS: {chains['note']}"
    else:
        figures = (f"max R-hat {chains['rhat']['max']:.3f}; min bulk ESS "
                   f"{chains['ess_bulk']['min']:.0f}")
    used = (f"{chains['n_chains']} of {report['n_chains']} chains x {chains['n_draws']} draws"
            + (f"; {chains['n_nonfinite_chains']} traced chains non-finite, left out"
               if chains["n_nonfinite_chains"] else ""))
    print(f"{report['n_chains']} chains, backend {report['backend']}, "
          f"{report['seconds']:.2f} s; {figures} (on {used})"
          + ("" if acceptance is None else f"; acceptance {acceptance:.3f}"))
    if report["nonfinite_chains"]:
        print(f"non-finite: {report['nonfinite_chains']} of {report['n_chains']} chains "
              f"(listed by the sampler, not replaced)")
    print(f"samples: {Path(out) / 'samples.pt'} and {Path(out) / 'samples.npy'}")
    if report.get("trajectory"):
        print(f"trajectory: {report['trajectory']}")
    print(f"diagnostics: {Path(out) / 'diagnostics.json'}; plots: {', '.join(report['plots'])}")
    return 0


def _apply_dim(block: dict[str, Any], dim: int) -> None:
    """Give ``--dim`` to an energy with a ``dim`` parameter (others are checked on sampling)."""
    import ebmcore

    if signature_parameter(ebmcore.get("energy", block["name"]), "dim") is None:
        return  # an energy of one fixed shape: sample_run refuses a --dim that differs
    given = block["params"].get("dim")
    if given is not None and given != dim:
        raise ValueError(f"--dim {dim} and --set energy.dim={given} disagree; give one")
    block["params"]["dim"] = dim


def _default_step_size(block: dict[str, Any], burn_in: int) -> str | None:
    """Give an adapting sampler that requires a step size a starting one when none is given.

    MALA (the default sampler) and HMC have no natural default step size: the right one
    depends on the target's scale and dimension. They adapt it per chain by dual averaging
    during burn-in, though, so the command line starts them from
    :data:`DEFAULT_START_STEP_SIZE` (recorded in diagnostics.json) rather than the sampler's
    Python signature growing a default that would be wrong without adaptation. A sampler
    that does not adapt (langevin), adaptation switched off, or no burn-in to adapt in gets
    no default: the step size must then be given.

    Returns:
        A note saying which step size was chosen, or ``None`` when nothing was added.
    """
    import ebmcore

    params = block["params"]
    target = ebmcore.get("sampler", block["name"])
    step = signature_parameter(target, "step_size")
    adapt = signature_parameter(target, "adapt_step_size")
    if step is None or step.default is not inspect.Parameter.empty or "step_size" in params:
        return None
    if adapt is None or adapt.default is not True or params.get("adapt_step_size", True) \
            is not True:
        return None
    if burn_in == 0:
        raise ValueError(f"sampler {block['name']!r} adapts its step size during burn-in, but "
                         f"--burn-in is 0: pass --set sampler.step_size=... or a burn-in")
    params["step_size"] = DEFAULT_START_STEP_SIZE
    return (f"sampler {block['name']}: no step_size given; adapting it during the {burn_in} "
            f"burn-in steps from {DEFAULT_START_STEP_SIZE}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained model and print a table (or JSON)."""
    from ebmcore.runs import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, n_test=args.n_test,
                                 n_ais_chains=args.ais_chains, n_ais_temps=args.ais_temps,
                                 seed=args.seed)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
        return 0
    if "image_evaluation" in report:
        for line in image_lines(report["image_evaluation"]):
            print(line)
        return 0
    for line in evaluation_lines(report.get("grid") or {}):
        print(line)
    rows: list[tuple[str, str]] = []
    grid = report.get("grid") or {}
    for key in ("nll", "data_nll", "nll_gap", "kl", "tv", "log_z", "log_z_box"):
        if grid.get(key) is not None:
            rows.append((f"grid {key}", f"{grid[key]:.4f}"))
    a = report["ais"]
    rows.append(("AIS log Z lower", f"{a['log_z_lower']:.4f} ± {a['lower_stderr']:.4f}"))
    rows.append(("reverse AIS log Z upper (approx.)",
                 f"{a['log_z_upper_approx']:.4f} ± {a['upper_stderr']:.4f}"))
    if a.get("warning"):
        rows.append(("AIS warning", a["warning"]))
    m, k = report["mmd_ais_samples_vs_data"], report["ksd_data_vs_model"]
    rows.append(("MMD² samples vs data", f"{m['statistic']:.5f} (p = {m['p_value']:.3f})"))
    rows.append(("KSD² data vs model", f"{k['statistic']:.5f} (p = {k['p_value']:.3f})"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0
