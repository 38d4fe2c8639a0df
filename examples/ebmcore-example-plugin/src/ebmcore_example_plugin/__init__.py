"""ebmcore-example-plugin: a third-party plugin written against the public ebmcore API.

It contributes one or more components of every kind a run needs: energies, a sampler, a loss,
a model and a data set whose recipe trains on them alone (``ebmcore train --dataset
gaussian_cross`` needs no built-in component).

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


@ebmcore.hookimpl
def ebmcore_losses() -> list[ebmcore.Component]:
    """Return the losses this plugin contributes."""
    return [
        ebmcore.Component(
            "replay_contrastive",
            "ebmcore_example_plugin.losses:ReplayContrastive",
            "Contrastive loss with persistent chains advanced by a sampler.",
            # a run passes its configured sampler as sampler=
            takes_sampler=True,
        ),
    ]


@ebmcore.hookimpl
def ebmcore_models() -> list[ebmcore.Component]:
    """Return the models this plugin contributes."""
    return [
        ebmcore.Component(
            "rbf_energy",
            "ebmcore_example_plugin.models:RBFEnergy",
            "Mixture of learnable Gaussian bumps; a density whatever its parameters.",
            # a run passes the data's flat size as dim=
            data_shape="dim",
        ),
    ]


@ebmcore.hookimpl
def ebmcore_datasets() -> list[ebmcore.Component]:
    """Return the data sets this plugin contributes."""
    return [
        ebmcore.Component(
            "gaussian_cross",
            "ebmcore_example_plugin.datasets:GaussianCross",
            "Two correlated Gaussians crossing in an X; exact log_prob and evaluation box.",
            # what `ebmcore train --dataset gaussian_cross` starts from: this plugin's parts
            recipe={
                "model": {"name": "rbf_energy", "params": {}},
                "loss": {"name": "replay_contrastive", "params": {"k": 10}},
                "sampler": {"name": "random_walk_metropolis", "params": {"step_size": 0.5}},
                "train": {"steps": 1000, "lr": 0.01},
            },
        ),
    ]
