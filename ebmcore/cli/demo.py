"""``ebmcore demo``: ``train`` on the built-in defaults into ``ebmcore-demo/``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ebmcore.cli.options import (
    COMMON_FLAGS,
    add_run_folder_options,
    add_threads_option,
    positive_int,
    stage_log,
    train_config,
)
from ebmcore.cli.summary import exit_status, print_summary

#: Where ``ebmcore demo`` writes when no ``--out`` is given (``-2``, ``-3``... on reruns).
DEMO_FOLDER = "ebmcore-demo"

#: The configuration keys the options of ``demo`` set, as its errors name them.
FLAGS: dict[str, str] = {**COMMON_FLAGS, "train.steps": "train.steps (--steps)",
                         "train.threads": "train.threads (--threads)"}


def add_parser(subparsers: Any) -> None:
    """Attach ``demo`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser(
        "demo", help="train, sample, evaluate and plot on built-in defaults",
        description="The README's first command: trains mlp on eight_gaussians, samples it, "
                    "evaluates it and writes plots and metrics.")
    add_run_folder_options(p, default_out=DEMO_FOLDER)
    p.add_argument("--steps", type=positive_int, help="training steps (default 2000)")
    p.add_argument("--device", help="cpu or cuda")
    add_threads_option(p, "training (same as --set train.threads=N)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="change a default, e.g. train.compile=true (as for train)")
    p.set_defaults(handler=run, flags=FLAGS)


def run(args: argparse.Namespace) -> int:
    """Run the built-in demo: ``ebmcore train`` on its defaults into ``ebmcore-demo/``."""
    from ebmcore.runs import train_run

    config = train_config(args)
    out = args.out if args.out is not None else free_folder(Path(DEMO_FOLDER))
    metrics = train_run(config, out, progress=not args.quiet, log=stage_log(args),
                        overwrite=args.overwrite)
    print_summary(Path(out), metrics)
    return exit_status(Path(out), metrics)


def free_folder(base: Path) -> Path:
    """Return ``base`` if it is absent or empty, else the first free ``base-2``, ``base-3``..."""
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
