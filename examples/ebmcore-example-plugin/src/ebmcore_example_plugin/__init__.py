"""ebmcore-example-plugin: a third-party plugin written against the public ebmcore API.

This root module is what the ``ebmcore`` entry point names. ebmcore imports it during plugin
discovery, so it stays light: it imports only ``ebmcore`` (which itself imports no torch) and
names every component by a lazy ``"module:attr"`` string. torch is imported only when a user
first creates one of these components.
"""

from __future__ import annotations

import ebmcore

#: The plugin API major version this plugin was written for; ebmcore refuses other majors.
EBMCORE_PLUGIN_API = 1

__version__ = "0.1.0"


@ebmcore.hookimpl
def ebmcore_energies() -> list[ebmcore.Component]:
    """Return the energies this plugin contributes."""
    return [
        ebmcore.Component(
            "quartic_bowl",
            "ebmcore_example_plugin.energies:QuarticBowl",
            "Separable quartic bowl E(x) = a * sum_i x_i^4, with exact log Z.",
            aliases=("quartic",),
        ),
        ebmcore.Component(
            "mueller_brown",
            "ebmcore_example_plugin.energies:MuellerBrown",
            "The 2-D Mueller-Brown potential scaled by an inverse temperature beta.",
            aliases=("muller_brown",),
        ),
    ]


@ebmcore.hookimpl
def ebmcore_samplers() -> list[ebmcore.Component]:
    """Return the samplers this plugin contributes."""
    return [
        ebmcore.Component(
            "random_walk_metropolis",
            "ebmcore_example_plugin.samplers:RandomWalkMetropolis",
            "Gradient-free random-walk Metropolis with an isotropic Gaussian proposal.",
            aliases=("rwm",),
        ),
    ]
