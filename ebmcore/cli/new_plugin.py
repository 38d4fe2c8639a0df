"""``ebmcore new-plugin``: write a working plugin distribution to start from."""

from __future__ import annotations

import argparse
from typing import Any

#: Library parameter names in error messages -> the options that set them.
FLAGS = {"kinds": "--kinds", "directory": "--dir", "overwrite=True": "--force"}


def add_parser(subparsers: Any) -> None:
    """Attach ``new-plugin`` to the ``ebmcore`` parser."""
    p = subparsers.add_parser(
        "new-plugin", help="write a new plugin distribution with one component per kind",
        description="Write DIR/ebmcore-NAME: a pyproject.toml with the ebmcore entry point, "
                    "one documented component per kind, a README and tests that use "
                    "ebmcore.testing. Install it with 'pip install -e DIR/ebmcore-NAME' and "
                    "run its tests with pytest.")
    p.add_argument("name", metavar="NAME",
                   help="the plugin's name: letters, digits, '-' and '_' (components are "
                        "named NAME_<something>)")
    p.add_argument("--kinds", default=None, metavar="KINDS",
                   help="comma-separated kinds to write (default: every kind with a "
                        "template: energy,sampler,loss,model,dataset,interpolant,coupling,"
                        "integrator)")
    p.add_argument("--dir", default=".", metavar="PATH", dest="directory",
                   help="where the project directory is created (default: here)")
    p.add_argument("--force", action="store_true",
                   help="write into an existing, non-empty project directory")
    p.set_defaults(handler=run, flags=FLAGS)


def run(args: argparse.Namespace) -> int:
    """Write the plugin and say what to do next."""
    from ebmcore.scaffold import PluginNames, parse_kinds, write_plugin

    kinds = parse_kinds(args.kinds)
    project = write_plugin(args.name, kinds=kinds, directory=args.directory,
                           overwrite=args.force)
    names = PluginNames.from_name(args.name)
    print(f"wrote {project} (plugin '{names.plugin}', distribution '{names.distribution}')")
    for kind in kinds:
        print(f"  {kind:<8} {names.component(kind)}")
    print(f"next: pip install -e {project} --no-deps && pytest {project}/tests")
    if "dataset" in kinds:
        print(f"      ebmcore train --dataset {names.component('dataset')} "
              f"--set train.steps=200")
    return 0
