"""Built-in plugin: energies. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1


@ebmcore.hookimpl
def ebmcore_energies() -> list[ebmcore.Component]:
    """Return the built-in energies."""
    return []
