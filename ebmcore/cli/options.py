"""What the commands share: argparse value types, the run options, and the translation of
library parameter names into the options that set them.

The library (:mod:`ebmcore.runs`, :mod:`ebmcore.config`) names configuration keys and
parameters in its errors (``train.steps``, ``settings['n_steps']``); a command lists in its
``FLAGS`` which of them its options set, and :func:`name_flags` rewrites an error message in
those terms before ``ebmcore`` prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: Library names every command translates: the run folder's ``overwrite`` parameter.
COMMON_FLAGS: dict[str, str] = {"overwrite=True": "--overwrite"}


def name_flags(message: str, flags: Mapping[str, str]) -> str:
    """Return ``message`` with each library name in ``flags`` replaced by its text there
    (the option that sets it), longest names first, whole names only."""
    for name in sorted(flags, key=len, reverse=True):
        message = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", flags[name], message)
    return message


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
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


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive, finite number, got {text}")
    return value


def add_threads_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--threads N``: the CPU threads torch (and numba) use for ``what``."""
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help=f"CPU threads for {what} (default: $EBMCORE_THREADS, else chosen "
                        f"for the size of the work: one thread for small models)")


def add_component_options(p: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    """``--KIND NAME`` for each kind, and ``--set SECTION.KEY=VALUE``."""
    for kind in kinds:
        p.add_argument(f"--{kind}", help=f"{kind} component name")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="set a parameter, e.g. model.hidden=[64,64] or train.lr=0.001")


def add_run_folder_options(p: argparse.ArgumentParser, default_out: str | None = None) -> None:
    """``--out``, ``--seed``, ``--overwrite`` and ``--quiet`` of a training run."""
    p.add_argument("--out", type=Path,
                   help="run folder" + (f" (default: {default_out}, or {default_out}-N when "
                                        f"that already holds a run)" if default_out else
                                        " (default: runs/<time>-<dataset>-<loss>)"))
    p.add_argument("--seed", type=non_negative_int, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")


def stage_log(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a run's stage messages go: standard error, or nowhere with ``--quiet``."""
    return (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))


def train_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run configuration ``train`` and ``demo`` build from their options.

    A ``--config`` file, or a data set or loss with a recipe (named on the command line or
    in the file), gives the start; component names, ``--set`` items and the single options
    (``--steps``, ``--seed``, ``--device``, ``--threads``) apply on top, in that order.
    """
    from ebmcore.config import apply_overrides, complete_run, load_toml

    given = {} if getattr(args, "config", None) is None else load_toml(args.config)
    config = complete_run(given, getattr(args, "dataset", None), getattr(args, "loss", None))
    for kind in ("dataset", "model", "loss", "sampler"):
        name = getattr(args, kind, None)
        if name is not None and name != config[kind]["name"]:
            # a new component starts from its own defaults, not the old one's parameters
            config[kind] = {"name": name, "params": {}}
    items = list(getattr(args, "overrides", []))
    if args.steps is not None:
        items.append(f"train.steps={args.steps}")
    if args.seed is not None:
        items.append(f"seed={args.seed}")
    if getattr(args, "device", None):
        items.append(f"device={json.dumps(args.device)}")
    if args.threads is not None:
        items.append(f"train.threads={args.threads}")
    return apply_overrides(config, items)
