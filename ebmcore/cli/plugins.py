"""``ebmcore plugins``: every plugin, its status, origin and components."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Attach ``plugins`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser("plugins", help="show every plugin, its status and components")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print one block (or JSON record) per plugin."""
    import ebmcore

    records = ebmcore.plugins()
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    # columns as wide as their longest entry, so long plugin names keep them aligned
    name_width = max((len(r.name) for r in records), default=0)
    status_width = max((len(r.status) for r in records), default=0)
    for r in records:
        origin = "built-in" if r.builtin else f"{r.distribution or '-'} {r.version or ''}".strip()
        print(f"{r.name:<{name_width}}  {r.status:<{status_width}}  {origin}")
        if r.error:
            print(f"    error: {r.error}")
        for kind, names in r.components.items():
            print(f"    {kind}: {', '.join(names)}")
        for entry in r.replaces:
            print(f"    replaces built-in {entry}")
        for note in r.notes:
            print(f"    note: {note}")
    return 0
