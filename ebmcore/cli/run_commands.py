"""Deprecated: the commands ``train``, ``sample``, ``evaluate`` and ``demo`` now live in one
module each (:mod:`ebmcore.cli.train`, ...); this module forwards the old names for one
release."""

from __future__ import annotations

import warnings
from typing import Any

#: Old name -> (module under ebmcore.cli, name there).
_MOVED = {
    "DEMO_FOLDER": ("demo", "DEMO_FOLDER"), "cmd_demo": ("demo", "run"),
    "DEFAULT_START_STEP_SIZE": ("sample", "DEFAULT_START_STEP_SIZE"),
    "cmd_sample": ("sample", "run"), "cmd_train": ("train", "run"),
    "cmd_evaluate": ("evaluate", "run"), "SIGNAL_EXIT": ("summary", "SIGNAL_EXIT"),
    "evaluation_lines": ("summary", "evaluation_lines"),
    "image_lines": ("summary", "image_lines"),
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _MOVED[name]
    warnings.warn(f"ebmcore.cli.run_commands.{name} moved to ebmcore.cli.{module}.{attr}",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(f"ebmcore.cli.{module}"), attr)


def add_commands(subparsers: Any) -> None:
    """Deprecated: attach ``train``, ``demo``, ``sample`` and ``evaluate`` (use each command
    module's ``add_parser``)."""
    from ebmcore.cli import demo, evaluate, sample, train

    warnings.warn("ebmcore.cli.run_commands.add_commands is deprecated; use each command "
                  "module's add_parser", DeprecationWarning, stacklevel=2)
    for command in (train, demo, sample, evaluate):
        command.add_parser(subparsers)
