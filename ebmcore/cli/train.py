"""``ebmcore train``: train a model on a data set into a run folder, or resume one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ebmcore.cli.options import (
    COMMON_FLAGS,
    add_component_options,
    add_run_folder_options,
    add_threads_option,
    positive_int,
    stage_log,
    train_config,
)
from ebmcore.cli.processes import add_distributed_options, check_before_launch, joined, launch
from ebmcore.cli.summary import exit_status, print_summary

#: The configuration keys the options of ``train`` set, as its errors name them.
FLAGS: dict[str, str] = {**COMMON_FLAGS, "train.steps": "train.steps (--steps)",
                         "train.threads": "train.threads (--threads)"}

#: ``train`` options that would change the run, refused with ``--resume``: (dest, flag).
NOT_WITH_RESUME = (("dataset", "--dataset"), ("model", "--model"), ("loss", "--loss"),
                   ("sampler", "--sampler"), ("overrides", "--set"), ("config", "--config"),
                   ("steps", "--steps"), ("device", "--device"), ("out", "--out"),
                   ("seed", "--seed"), ("overwrite", "--overwrite"), ("threads", "--threads"))


def add_parser(subparsers: Any) -> None:
    """Attach ``train`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser(
        "train", help="train an energy on a data set; writes a run folder",
        description="Train a model on a data set. With no arguments: mlp on eight_gaussians "
                    "with pcd and langevin. Components are chosen by name; parameters with "
                    "--set section.key=value (e.g. --set sampler.step_size=0.01).")
    add_component_options(p, ("dataset", "model", "loss", "sampler"))
    add_run_folder_options(p)
    p.add_argument("--config", type=Path, help="replay a run from its config.toml")
    p.add_argument("--resume", type=Path, metavar="RUN_FOLDER",
                   help="continue an interrupted run from its newest readable checkpoint "
                        "(only --quiet, --nproc and --dist-* may be added; --nproc may "
                        "differ from the run's: its chains are re-split)")
    p.add_argument("--steps", type=positive_int,
                   help="training steps (same as --set train.steps=N)")
    p.add_argument("--device", help="cpu or cuda")
    add_threads_option(p, "training (same as --set train.threads=N)")
    add_distributed_options(p, "train with DistributedDataParallel-style gradient averaging; "
                               "the global batch (train.batch_size) is split over the "
                               "processes")
    p.set_defaults(handler=run, flags=FLAGS)


def run(args: argparse.Namespace) -> int:
    """Train on the chosen components and write the run folder, or resume one (``--resume``).

    With ``--nproc N`` the command runs in N processes; under torchrun each worker joins the
    job (see :mod:`ebmcore.launch`).
    """
    from ebmcore.launch import should_launch
    from ebmcore.runs import prepare_output_dir, train_run

    if args.resume is not None:
        return _resume(args)
    config = train_config(args)
    out = args.out or Path("runs") / (time.strftime("%Y%m%d-%H%M%S") +
                                      f"-{config['dataset']['name']}-{config['loss']['name']}")
    if should_launch(args.nproc):
        check_before_launch(config, args.nproc)
        prepare_output_dir(out, overwrite=args.overwrite)
        return launch(args, out)
    fresh = not Path(out).exists()
    with joined(args, str(config.get("device", "cpu"))) as ranks:
        try:
            metrics = train_run(config, out, progress=not args.quiet, log=stage_log(args),
                                overwrite=args.overwrite, distributed=ranks.active)
        except Exception:
            if fresh and ranks.is_main:
                _remove_unstarted_run(Path(out))
            raise
        if ranks.is_main:
            print_summary(Path(out), metrics)
        return exit_status(Path(out), metrics, say=ranks.is_main)


def _remove_unstarted_run(out: Path) -> None:
    """Remove the folder a run that failed before training anything created: one holding
    nothing but its ``config.toml`` and empty folders (a component that does not fit another
    fails at the first step), so no half-written run is left looking like a real one. A
    folder with a checkpoint, a model or anything else is kept."""
    try:
        if not out.is_dir():
            return  # never created (the folder itself was refused)
        files = [p for p in out.rglob("*") if p.is_file()]
        if any(p != out / "config.toml" for p in files):
            return
        for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        out.rmdir()
    except OSError:
        pass  # tidying up must never hide the error that stopped the run


def _resume(args: argparse.Namespace) -> int:
    """Continue the run folder ``args.resume`` as its config.toml describes."""
    from ebmcore.config import load_toml
    from ebmcore.errors import CheckpointError, CommandError
    from ebmcore.launch import should_launch
    from ebmcore.runs import resumable_checkpoints

    given = [flag for dest, flag in NOT_WITH_RESUME if getattr(args, dest, None)]
    if given:
        raise CommandError(f"--resume continues a run exactly as its config.toml describes and "
                           f"writes into its folder; it cannot be combined with "
                           f"{', '.join(given)} (only --quiet and the --nproc/--dist-* "
                           f"options)")
    try:
        resumable_checkpoints(args.resume)  # no folder or checkpoint: say so before any run
        config = load_toml(args.resume / "config.toml")
        if should_launch(args.nproc):
            check_before_launch(config, args.nproc)
            return launch(args, None)
        with joined(args, str(config.get("device", "cpu"))) as ranks:
            return _resume_here(args, ranks)
    except CheckpointError as exc:  # nothing to resume from: say how to start again
        raise CommandError(f"{exc} (ebmcore train --config {args.resume / 'config.toml'} "
                           f"--out {args.resume} --overwrite)") from exc


def _resume_here(args: argparse.Namespace, ranks: Any) -> int:
    """Resume on the ranks of the job this process joined; rank 0 prints the summary."""
    from ebmcore.runs import resume_run

    metrics = resume_run(args.resume, progress=not args.quiet, log=stage_log(args),
                         warn=lambda line: print(f"ebmcore: warning: {line}", file=sys.stderr),
                         distributed=ranks.active)
    if metrics is None:
        if ranks.is_main:
            print(f"{args.resume}: the run is already finished; nothing to do")
        return 0
    if ranks.is_main:
        print_summary(args.resume, metrics)
    return exit_status(args.resume, metrics, say=ranks.is_main)
