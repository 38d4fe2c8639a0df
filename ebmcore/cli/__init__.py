"""The ``ebmcore`` command line.

Each command lives in its own module, which exposes ``add_parser(subparsers) -> None`` (it
adds the command's parser and sets its ``handler`` and, where the library's errors name
parameters its options set, its ``flags``); :data:`COMMANDS` lists them, in the order
``ebmcore --help`` shows them. Errors a user can cause print one line to standard error and
exit non-zero, never a traceback; library parameter names in them are rewritten as the
options that set them (:func:`ebmcore.cli.options.name_flags`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ebmcore.cli import demo, evaluate, info, listing, new_plugin, plugins, sample, train
from ebmcore.cli.options import name_flags
from ebmcore.errors import CommandError, DistributedError, EbmcoreError
from ebmcore.launch import rank_prefix

#: The command modules, each with ``add_parser(subparsers)``: the one list of commands.
COMMANDS = (plugins, listing, info, train, demo, sample, evaluate, new_plugin)

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on standard error, exit status 2.

    Abbreviated long options are refused (``allow_abbrev=False``): ``sample --n 100`` must
    not be read as ``--nproc 100`` and start a hundred processes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every command of :data:`COMMANDS` attached."""
    from ebmcore import __version__

    parser = _OneLineParser(
        prog="ebmcore",
        description="Energy-based modelling for PyTorch: components, plugins, sampling, training.",
    )
    parser.add_argument("--version", action="version", version=f"ebmcore {__version__}")
    # argv: what --nproc hands to the processes it starts; flags: a command's translations
    parser.set_defaults(argv=None, flags={})
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("ebmcore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (ebmcore list | head): nothing to report
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a pipe's early end
    except (EbmcoreError, LookupError, ValueError, TypeError, OSError) as exc:
        text = str(exc).strip()
        message = name_flags(text.splitlines()[0], args.flags) if text else type(exc).__name__
        # a DistributedError names its rank itself
        prefix = "" if isinstance(exc, DistributedError) else rank_prefix()
        print(f"ebmcore: error: {prefix}{message}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point standard output at the null device, so that flushing it at exit raises no
    second broken pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a captured stream): nothing to do
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
