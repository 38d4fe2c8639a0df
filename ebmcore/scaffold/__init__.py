"""Scaffolding for plugin authors: ``ebmcore new-plugin`` writes a working plugin distribution.

:func:`write_plugin` writes a project with one documented component per kind (energy,
sampler, loss, model, data set), the ``ebmcore`` entry point and tests that use
:mod:`ebmcore.testing`; :func:`render_plugin` returns the same files without writing them.
"""

from __future__ import annotations

from ebmcore.scaffold.plugin import (
    KIND_TEMPLATES,
    SCAFFOLD_KINDS,
    KindTemplate,
    PluginNames,
    parse_kinds,
    render_plugin,
    write_plugin,
)

__all__ = ["KIND_TEMPLATES", "SCAFFOLD_KINDS", "KindTemplate", "PluginNames", "parse_kinds",
           "render_plugin", "write_plugin"]
