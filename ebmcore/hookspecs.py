"""Hook specifications: the plugin author's API.

A plugin is a module (or any object) registered under the ``ebmcore`` entry-point group. It
implements one or more of the hooks below, each marked with :data:`hookimpl`, and returns
:class:`ebmcore.Component` descriptors. Keep the plugin's root module light: name heavy
targets as ``"module:attr"`` strings so nothing is imported until a user asks for it.

Example::

    import ebmcore

    EBMCORE_PLUGIN_API = 1

    @ebmcore.hookimpl
    def ebmcore_energies():
        return [ebmcore.Component("my_energy", "my_pkg.energies:MyEnergy", "My energy.")]
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from ebmcore.component import Component

PROJECT_NAME = "ebmcore"

#: Marks a hook specification (used by the core only).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Maps each hook name to the component kind it contributes.
HOOK_KINDS: dict[str, str] = {
    "ebmcore_energies": "energy",
    "ebmcore_samplers": "sampler",
    "ebmcore_losses": "loss",
    "ebmcore_models": "model",
    "ebmcore_datasets": "dataset",
}


@hookspec
def ebmcore_energies() -> Iterable[Component]:
    """Return the energies this plugin contributes (kind ``energy``).

    Each target builds an :class:`ebmcore.Energy`: a module whose ``forward`` maps a batch
    ``(B, *event_shape)`` to energies ``(B,)``.
    """


@hookspec
def ebmcore_samplers() -> Iterable[Component]:
    """Return the samplers this plugin contributes (kind ``sampler``).

    Each target builds an :class:`ebmcore.Sampler` implementing ``init`` and ``step``; the
    base class supplies ``sample``.
    """


@hookspec
def ebmcore_losses() -> Iterable[Component]:
    """Return the training objectives this plugin contributes (kind ``loss``).

    Each target builds an :class:`ebmcore.Loss` returning :class:`ebmcore.LossOutput`.
    """


@hookspec
def ebmcore_models() -> Iterable[Component]:
    """Return the neural energy models this plugin contributes (kind ``model``).

    Each target builds an :class:`ebmcore.Energy` with learnable parameters.
    """


@hookspec
def ebmcore_datasets() -> Iterable[Component]:
    """Return the data sets this plugin contributes (kind ``dataset``).

    Each target builds an :class:`ebmcore.Dataset` with ``sample(n, generator)`` and, where
    the density is known, ``log_prob(x)``.
    """
