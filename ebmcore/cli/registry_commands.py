"""Sub-commands that inspect the registry: ``plugins``, ``list`` and ``info``."""

from __future__ import annotations

import argparse
import json
from typing import Any

import ebmcore
from ebmcore.component import KINDS


def add_commands(subparsers: Any) -> None:
    """Attach ``plugins``, ``list`` and ``info`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser("plugins", help="show every plugin, its status and components")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(handler=cmd_plugins)

    p = subparsers.add_parser("list", help="list component names, of one kind or all")
    p.add_argument("kind", nargs="?", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("--json", action="store_true", help="print names as JSON")
    p.set_defaults(handler=cmd_list)

    p = subparsers.add_parser("info", help="show one component: summary, provider, parameters")
    p.add_argument("kind", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("name", help="component name, or plugin:name")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(handler=cmd_info)


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print one line (or JSON record) per plugin."""
    records = ebmcore.plugins()
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    for r in records:
        origin = "built-in" if r.builtin else f"{r.distribution or '-'} {r.version or ''}".strip()
        print(f"{r.name:<14} {r.status:<12} {origin}")
        if r.error:
            print(f"    error: {r.error}")
        for kind, names in r.components.items():
            print(f"    {kind}: {', '.join(names)}")
        for entry in r.replaces:
            print(f"    replaces built-in {entry}")
        for note in r.notes:
            print(f"    note: {note}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print component names with their one-line summaries."""
    kinds = [ebmcore.registry.normalize_kind(args.kind)] if args.kind else list(KINDS)
    listing = {kind: ebmcore.names(kind) for kind in kinds}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    registry = ebmcore.get_registry()
    for kind in kinds:
        if len(kinds) > 1:
            print(f"{kind}:")
        for name in listing[kind]:
            try:
                summary = registry.component(kind, name)[0].summary
            except ebmcore.AmbiguousComponentError:
                summary = "(several plugins provide this name; use plugin:name)"
            indent = "  " if len(kinds) > 1 else ""
            print(f"{indent}{name:<24} {summary}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a component is, who provides it and the parameters it takes."""
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
