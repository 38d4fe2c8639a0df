"""Running a command in several processes: the ``--nproc`` and ``--dist-*`` options, joining
the job a process was started into, and starting one (see :mod:`ebmcore.launch`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ebmcore.cli.options import positive_float, positive_int
from ebmcore.launch import DEFAULT_TIMEOUT, DIST_BACKENDS


def add_distributed_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--nproc``, ``--dist-backend`` and ``--dist-timeout``; ``what`` says what the
    processes do together."""
    group = p.add_argument_group(
        "several processes (torch.distributed)",
        f"--nproc N starts N processes on this machine through torch.distributed.run (what "
        f"torchrun runs); or start the command itself under torchrun --nproc-per-node N "
        f"[--nnodes ...] -m ebmcore ..., without --nproc. Either way: {what}; rank 0 writes "
        f"the output folder.")
    group.add_argument("--nproc", type=positive_int, metavar="N",
                       help="processes to run on this machine (1: this one alone)")
    group.add_argument("--dist-backend", choices=DIST_BACKENDS, default="auto",
                       help="process-group backend (auto: nccl on cuda, else gloo)")
    group.add_argument("--dist-timeout", type=positive_float, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS",
                       help=f"a rank waiting longer than this for the others (one died or "
                            f"hangs) ends the job with an error (default {DEFAULT_TIMEOUT:g})")


@contextlib.contextmanager
def joined(args: argparse.Namespace, device: str) -> Iterator[Any]:
    """Join the job this process was launched into (a group of one when it was not).

    Ranks other than 0 turn quiet: rank 0 prints the progress, the messages and the summary.
    """
    from ebmcore.launch import joined as join_job

    with join_job(device, args.dist_backend, args.dist_timeout) as ranks:
        if not ranks.is_main:
            args.quiet = True
            warnings.filterwarnings("ignore")  # rank 0 gives each warning once
        yield ranks


def check_before_launch(config: dict[str, Any], nproc: int) -> None:
    """Refuse, once and before any process starts, a run that every worker would refuse."""
    from ebmcore.config import check_train_config
    from ebmcore.ranks import batch_share

    check_train_config(config)
    batch_share(int((config.get("train") or {}).get("batch_size", 0)), nproc)


def launch(args: argparse.Namespace, out: Path | None) -> int:
    """Run this command line in ``--nproc`` processes through torch.distributed.run.

    The workers get the same arguments, plus ``--out`` when the folder was chosen here (a
    default folder name holds the time, which the workers must not each pick anew).
    """
    from ebmcore.launch import launch as start_workers

    argv = list(args.argv or sys.argv[1:])
    if out is not None and args.out is None:
        argv += ["--out", str(out)]
    return start_workers(argv, args.nproc)
