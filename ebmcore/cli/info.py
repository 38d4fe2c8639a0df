"""``ebmcore info``: one component's summary, provider and parameters."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ebmcore.component import KINDS


def add_parser(subparsers: Any) -> None:
    """Attach ``info`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser("info", help="show one component: summary, provider, parameters")
    p.add_argument("kind", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("name", help="component name, or plugin:name")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print what a component is, who provides it and the parameters it takes."""
    import ebmcore

    info = ebmcore.describe(args.kind, args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['kind']} {info['name']}: {info['summary']}")
    print(f"  provided by: plugin {info['plugin']} ({info['distribution'] or 'in-process'})")
    print(f"  target: {info['target']}")
    if info["aliases"]:
        print(f"  aliases: {', '.join(info['aliases'])}")
    print("  parameters:" if info["parameters"] else "  parameters: none")
    for p in info["parameters"]:
        default = f" = {p['default']}" if p["default"] is not None else " (required)"
        annotation = f": {p['annotation']}" if p["annotation"] else ""
        print(f"    {p['name']}{annotation}{default}")
        if p["doc"]:
            print(f"        {p['doc']}")
    return 0
