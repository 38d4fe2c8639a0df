"""``ebmcore list``: component names with their one-line summaries."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ebmcore.component import KINDS


def add_parser(subparsers: Any) -> None:
    """Attach ``list`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser("list", help="list component names, of one kind or all")
    p.add_argument("kind", nargs="?", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("--json", action="store_true", help="print names as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print component names with their one-line summaries."""
    import ebmcore
    from ebmcore.errors import AmbiguousComponentError
    from ebmcore.registry import get_registry, normalize_kind

    kinds = [normalize_kind(args.kind)] if args.kind else list(KINDS)
    listing = {kind: ebmcore.names(kind) for kind in kinds}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    registry = get_registry()
    indent = "  " if len(kinds) > 1 else ""
    for kind in kinds:
        if len(kinds) > 1:
            print(f"{kind}:")
        width = max((len(name) for name in listing[kind]), default=0)
        for name in listing[kind]:
            try:
                summary = registry.component(kind, name)[0].summary
            except AmbiguousComponentError:
                summary = "(several plugins provide this name; use plugin:name)"
            print(f"{indent}{name:<{max(width, 24)}} {summary}")
    return 0
