"""The ``ebmcore`` command line.

Each sub-command lives in its own module and registers itself with :func:`build_parser`.
Errors a user can cause print one line to standard error and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ebmcore.cli import registry_commands, run_commands
from ebmcore.errors import EbmcoreError
from ebmcore.launch import DistributedError, rank_prefix

#: Modules that each contribute sub-commands through ``add_commands(subparsers)``.
COMMAND_MODULES = [registry_commands, run_commands]


class CommandError(Exception):
    """A user error detected by a command; printed as one line, exit status 2."""


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on standard error, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command attached."""
    parser = _OneLineParser(
        prog="ebmcore",
        description="Energy-based modelling for PyTorch: components, plugins, sampling, training.",
    )
    from ebmcore import __version__

    parser.add_argument("--version", action="version", version=f"ebmcore {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMAND_MODULES:
        module.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what --nproc hands to the processes it starts
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("ebmcore: interrupted", file=sys.stderr)
        return 130
    except (CommandError, EbmcoreError, LookupError, ValueError, TypeError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # a DistributedError names its rank itself
        prefix = "" if isinstance(exc, DistributedError) else rank_prefix()
        print(f"ebmcore: error: {prefix}{message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
