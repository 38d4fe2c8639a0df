"""Built-in plugin: models. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1


@ebmcore.hookimpl
def ebmcore_models() -> list[ebmcore.Component]:
    """Return the built-in models."""
    return [
        ebmcore.Component("mlp", "ebmcore_models.mlp:MLPEnergy",
                          "Multilayer-perceptron energy for vectors (optional spectral norm).",
                          data_shape="dim"),
        ebmcore.Component("conv", "ebmcore_models.conv:ConvEnergy",
                          "Small convolutional energy for images, no batch norm.",
                          aliases=("cnn",), data_shape="event_shape"),
        ebmcore.Component("mlp_field", "ebmcore_models.fields:MLPField",
                          "Time-conditioned MLP vector field v(x, t) for vectors.",
                          data_shape="dim"),
        ebmcore.Component("unet_field", "ebmcore_models.fields:UNetField",
                          "Small convolutional U-Net vector field v(x, t) for images.",
                          aliases=("unet",), data_shape="event_shape"),
        ebmcore.Component("unet_energy", "ebmcore_models.unet_energy:UNetEnergy",
                          "Scalar image energy from a U-Net's output (for energy matching).",
                          data_shape="event_shape"),
    ]
