"""Deprecated: the commands ``plugins``, ``list`` and ``info`` now live in one module each
(:mod:`ebmcore.cli.plugins`, :mod:`ebmcore.cli.listing`, :mod:`ebmcore.cli.info`); this
module forwards the old names for one release."""

from __future__ import annotations

import warnings
from typing import Any

#: Old name -> module under ebmcore.cli whose ``run`` it was.
_MOVED = {"cmd_plugins": "plugins", "cmd_list": "listing", "cmd_info": "info"}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"ebmcore.cli.registry_commands.{name} moved to "
                  f"ebmcore.cli.{_MOVED[name]}.run", DeprecationWarning, stacklevel=2)
    return importlib.import_module(f"ebmcore.cli.{_MOVED[name]}").run


def add_commands(subparsers: Any) -> None:
    """Deprecated: attach ``plugins``, ``list`` and ``info`` (use each command module's
    ``add_parser``)."""
    from ebmcore.cli import info, listing, plugins

    warnings.warn("ebmcore.cli.registry_commands.add_commands is deprecated; use each "
                  "command module's add_parser", DeprecationWarning, stacklevel=2)
    for command in (plugins, listing, info):
        command.add_parser(subparsers)
