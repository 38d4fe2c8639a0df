"""``ebmcore sample``: sample an energy component or a trained model into a folder."""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any

from ebmcore.cli.options import (
    COMMON_FLAGS,
    add_threads_option,
    non_negative_int,
    positive_float,
    positive_int,
)
from ebmcore.cli.processes import add_distributed_options, joined, launch

#: The step size ``ebmcore sample`` starts an adapting sampler (MALA, HMC) from when none is
#: given: dual averaging tunes it during burn-in, so it need only be of the right order for
#: targets of unit scale (on double_well, starts of 0.01, 0.1 and 1 all reached acceptance
#: 0.56-0.57 after 200 burn-in steps).
DEFAULT_START_STEP_SIZE = 0.1

#: The options that set each of :func:`ebmcore.runs.sample_run`'s settings, as its errors
#: name them.
FLAGS: dict[str, str] = {
    **COMMON_FLAGS, "settings['n_chains']": "--chains", "settings['n_steps']": "--steps",
    "settings['burn_in']": "--burn-in", "settings['thin']": "--thin",
    "settings['trace_chains']": "--trace-chains",
    "settings['save_trajectory']": "--save-trajectory", "settings['backend']": "--backend",
    "settings['dim']": "--dim", "settings['init_scale']": "--init-scale",
}


def add_parser(subparsers: Any) -> None:
    """Attach ``sample`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser(
        "sample", help="sample an energy component or a trained model",
        description="Sample an energy by name (--energy gaussian --set energy.mean=[0,0]) or a "
                    "trained model (--checkpoint run/model.pt) with any sampler and backend.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--energy", help="energy component name")
    source.add_argument("--checkpoint", type=Path,
                        help="model.pt written by ebmcore train, or one of its run's "
                             "checkpoints/step-*.pt")
    p.add_argument("--sampler", default=None,
                   help="sampler name (default: for a trained model, the sampler its run wrote "
                        "its samples with (sample.sampler), else mala; for a trained field "
                        "without an energy, the run's own flow sampler)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="energy.* or sampler.* parameters")
    p.add_argument("--chains", type=positive_int, default=1000, help="number of chains")
    p.add_argument("--steps", type=positive_int, default=1000, help="steps after burn-in")
    p.add_argument("--burn-in", type=non_negative_int, default=500,
                   help="adaptation steps, not kept")
    p.add_argument("--thin", type=positive_int, default=1, help="keep every N-th step")
    p.add_argument("--trace-chains", type=positive_int, default=None, metavar="N",
                   help="record the kept steps of at most N chains, evenly spread, for R-hat, "
                        "ESS and the chain plots (default 1000)")
    p.add_argument("--save-trajectory", action="store_true",
                   help="also write every chain's kept steps to trajectory.npy, streamed to "
                        "disk as the chains run (a backend that streams: torch, compiled)")
    p.add_argument("--backend", default="auto", metavar="NAME",
                   help="auto (default: the fastest that applies), torch, or a registered "
                        "backend (built in: numba, cuda, compiled; ebmcore list backend)")
    p.add_argument("--dim", type=positive_int,
                   help="dimension of the energy (its dim parameter, same as --set energy.dim=D)")
    p.add_argument("--init-scale", type=positive_float, default=1.0,
                   help="initial points are init_scale * N(0, I)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", type=Path, help="output folder (default: runs/sample-<time>)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_option(p, "sampling")
    add_distributed_options(p, "split the chains over the processes, each with its own random "
                               "stream; samples and diagnostics are gathered")
    p.set_defaults(handler=run, flags=FLAGS)


def run(args: argparse.Namespace) -> int:
    """Sample an energy or a trained model and write samples, diagnostics and plots."""
    from ebmcore.config import apply_overrides
    from ebmcore.errors import CommandError
    from ebmcore.launch import should_launch
    from ebmcore.runs import prepare_output_dir

    base = {"sampler": {"name": args.sampler or "mala", "params": {}}}
    if args.energy:
        base["energy"] = {"name": args.energy, "params": {}}
    config = apply_overrides(base, args.overrides)
    unexpected = set(config) - {"sampler", "energy"}
    if unexpected:
        raise CommandError(f"--set for sample takes energy.* and sampler.* keys, got "
                           f"{', '.join(sorted(unexpected))}")
    if args.checkpoint is not None and "energy" in config:
        raise CommandError("energy.* parameters apply to --energy, not to --checkpoint")
    if args.dim is not None and "energy" in config:
        _apply_dim(config["energy"], args.dim)
    out = args.out or Path("runs") / time.strftime("sample-%Y%m%d-%H%M%S")
    if should_launch(args.nproc):
        prepare_output_dir(out, overwrite=args.overwrite)
        return launch(args, out)
    with joined(args, args.device) as ranks:
        return _sample(args, config, out, ranks)


def _sample(args: argparse.Namespace, config: dict[str, Any], out: Path, ranks: Any) -> int:
    """Sample as :func:`run` set up, on the ranks of ``ranks``; rank 0 prints the report."""
    import torch

    from ebmcore.runs import is_flow_model, load_energy, sample_run

    device = torch.device(args.device)
    if args.checkpoint is not None:
        energy, run_config = _checkpoint_model(args.checkpoint)
        energy = energy.to(device)
    else:
        energy = load_energy(config.get("energy"), None, device)
        run_config = {}
    if is_flow_model(energy):
        return _sample_field(args, config, energy, out, ranks, run_config)
    if args.sampler is None and args.checkpoint is not None:
        config["sampler"] = _run_writing_sampler(args.checkpoint, run_config,
                                                 config["sampler"])
    _check_sampler(energy, config["sampler"]["name"])
    note = _default_step_size(config["sampler"], args.burn_in)
    if note and not args.quiet:
        print(note, file=sys.stderr)
    settings = {"n_chains": args.chains, "n_steps": args.steps, "burn_in": args.burn_in,
                "thin": args.thin, "backend": args.backend, "dim": args.dim,
                "init_scale": args.init_scale, "save_trajectory": args.save_trajectory}
    if args.trace_chains is not None:
        settings["trace_chains"] = args.trace_chains
    report = sample_run(energy, config["sampler"], settings, out, seed=args.seed,
                        progress=not args.quiet, overwrite=args.overwrite,
                        distributed=ranks.active, threads=args.threads)
    if ranks.is_main:
        _print_report(report, out)
    return 0


def _run_writing_sampler(checkpoint: Path, run_config: dict[str, Any],
                         default: dict[str, Any]) -> dict[str, Any]:
    """The sampler ``ebmcore sample --checkpoint`` uses when ``--sampler`` names none: the one
    the run wrote its samples with (its ``sample.sampler``, e.g. parallel tempering on the 2-D
    data sets, whose energies are multimodal), with ``--set sampler.*`` over its parameters;
    ``default`` (MALA) for a run that names none or a file without its run's configuration.
    """
    from ebmcore.config import sample_sampler
    from ebmcore.errors import CommandError, ConfigError

    try:
        block = sample_sampler(run_config.get("sample") or {})
    except ConfigError as exc:
        raise CommandError(f"{checkpoint}: its run's {exc}; name a sampler with --sampler") \
            from exc
    if block is None:
        return default
    return {"name": block["name"], "params": {**block["params"], **default["params"]}}


def _checkpoint_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """The model in ``path`` and its run's configuration, from one read of the file.

    A training checkpoint (``RUN/checkpoints/step-*.pt``) is rebuilt from the run folder's
    ``config.toml`` and takes the checkpoint's averaged weights where the run kept an EMA
    (the weights its run samples), else its weights; a ``model.pt`` is rebuilt from the spec
    it stores, with the configuration its file carries (``{}`` when it carries none).

    Raises:
        CommandError: When a training checkpoint's ``config.toml`` is not beside
            ``checkpoints/``.
    """
    from ebmcore.checkpoint import load_checkpoint_with_meta, model_from_payload
    from ebmcore.config import complete_run, load_toml
    from ebmcore.errors import CommandError
    from ebmcore.runs.build import build_training
    from ebmcore.runs.fields import saved_run_config

    state, meta = load_checkpoint_with_meta(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        return model_from_payload(state, meta, path).eval(), saved_run_config(meta)
    saved = Path(path).resolve().parent.parent / "config.toml"
    if not saved.is_file():
        raise CommandError(f"{path} is a training checkpoint (step {state['step']}), but its "
                           f"run's config.toml is not at {saved}: sample the run's model.pt, "
                           f"or keep the checkpoint in its run folder's checkpoints/")
    config = complete_run(load_toml(saved))
    model = build_training(config)["model"]
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    return model.eval(), config


def _sample_field(args: argparse.Namespace, config: dict[str, Any], field: Any, out: Path,
                  ranks: Any, run_config: dict[str, Any]) -> int:
    """Sample a trained field without an energy as a flow: the run's own sampler (unless
    ``--sampler`` names one), read as the run's loss says, with ``--set sampler.*`` over its
    parameters; ``--chains`` samples. The MCMC options (steps, burn-in, thinning, backend)
    do not apply. ``run_config`` is the run's configuration (``{}`` for a file that carries
    none)."""
    from ebmcore.errors import CommandError
    from ebmcore.runs.fields import sample_field_run, saved_flow_settings

    if ranks.active:
        raise CommandError("a field is sampled in one process; drop --nproc")
    saved = run_config.get("sampler")
    if args.sampler is None and isinstance(saved, dict) and saved.get("name"):
        spec = {"name": saved["name"],
                "params": {**saved.get("params", {}), **config["sampler"]["params"]}}
    elif args.sampler is None:
        raise CommandError(f"{args.checkpoint} holds a field and records no sampler; name a "
                           f"flow sampler with --sampler")
    else:
        spec = config["sampler"]
    _check_sampler(field, spec["name"])
    report = sample_field_run(field, spec, saved_flow_settings(run_config), args.chains, out,
                              seed=args.seed, overwrite=args.overwrite,
                              dataset=_run_dataset(run_config))
    print(f"{report['n_samples']} samples from the field by {spec['name']} "
          f"({report['integrator']}), {report['nfe']} field evaluations, "
          f"{report['seconds']:.2f} s")
    judged = report.get("image_samples")
    if judged is not None:
        coverage, frechet = judged["logistic_coverage"], judged["frechet"]
        print(f"images: {coverage['confident_share']:.0%} confident (logistic judge, "
              f"{coverage['classes_covered']} classes, largest {coverage['max_share']:.0%}); "
              f"Fréchet distance {frechet['ratio']:.2f}x the held-out split's")
    print(f"samples: {out / 'samples.pt'} and {out / 'samples.npy'}")
    print(f"diagnostics: {out / 'diagnostics.json'}; plots: {', '.join(report['plots'])}")
    return 0


def _run_dataset(run_config: dict[str, Any]) -> Any:
    """The data set of the run that saved a model (its config's ``[dataset]``), so that image
    samples are drawn and judged as the run judged its own; ``None`` when the config names
    none."""
    import ebmcore
    from ebmcore.runs.build import component_block

    block = run_config.get("dataset")
    if not isinstance(block, dict) or not block.get("name"):
        return None
    block = component_block("dataset", block)
    return ebmcore.create("dataset", block["name"], **block["params"])


def _check_sampler(model: Any, name: str) -> None:
    """Refuse, before the sampler is built or anything written, a sampler that cannot sample
    ``model`` (an MCMC sampler for a field without an energy, a flow sampler for an energy);
    the message names both and what to use instead."""
    import ebmcore
    from ebmcore.errors import CommandError
    from ebmcore.field import check_sampler_fits

    try:
        check_sampler_fits(model, ebmcore.get("sampler", name), name)
    except TypeError as exc:
        raise CommandError(f"--sampler: {exc}") from exc


def _print_report(report: dict[str, Any], out: Path) -> None:
    """Print what a sampling run did and where its files are."""
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
    if chains.get("warning"):
        print(f"WARNING: {chains['warning']}")
    if report["nonfinite_chains"]:
        print(f"non-finite: {report['nonfinite_chains']} of {report['n_chains']} chains "
              f"(listed by the sampler, not replaced)")
    print(f"samples: {Path(out) / 'samples.pt'} and {Path(out) / 'samples.npy'}")
    if report.get("trajectory"):
        print(f"trajectory: {report['trajectory']}")
    print(f"diagnostics: {Path(out) / 'diagnostics.json'}; plots: {', '.join(report['plots'])}")


def _apply_dim(block: dict[str, Any], dim: int) -> None:
    """Give ``--dim`` to an energy with a ``dim`` parameter, as ``--set energy.dim`` would
    (an energy of one fixed shape is checked against it when sampled)."""
    import ebmcore
    from ebmcore.config import signature_parameter
    from ebmcore.errors import CommandError

    if signature_parameter(ebmcore.get("energy", block["name"]), "dim") is None:
        return  # an energy of one fixed shape: sample_run refuses a --dim that differs
    given = block["params"].get("dim")
    if given is not None and given != dim:
        raise CommandError(f"--dim {dim} and --set energy.dim={given} disagree; give one")
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
    from ebmcore.config import signature_parameter
    from ebmcore.errors import CommandError

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
        raise CommandError(f"sampler {block['name']!r} adapts its step size during burn-in, "
                           f"but --burn-in is 0: pass --set sampler.step_size=... or a burn-in")
    params["step_size"] = DEFAULT_START_STEP_SIZE
    return (f"sampler {block['name']}: no step_size given; adapting it during the {burn_in} "
            f"burn-in steps from {DEFAULT_START_STEP_SIZE}")
