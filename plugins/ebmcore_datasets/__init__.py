"""Built-in plugin: datasets. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1


@ebmcore.hookimpl
def ebmcore_datasets() -> list[ebmcore.Component]:
    """Return the built-in datasets."""
    C = ebmcore.Component
    return [
        C("eight_gaussians", "ebmcore_datasets.gaussians:EightGaussians",
          "Gaussians evenly spaced on a circle (FFJORD's 8gaussians); exact log_prob."),
        C("two_moons", "ebmcore_datasets.moons:TwoMoons",
          "Two interleaving noisy half circles.", aliases=("moons",)),
        C("swiss_roll", "ebmcore_datasets.swiss_roll:SwissRoll",
          "A noisy 2-D Swiss roll spiral.", aliases=("swissroll",)),
        C("checkerboard", "ebmcore_datasets.checkerboard:Checkerboard",
          "Uniform on the black squares of a checkerboard; exact log_prob."),
        C("rings", "ebmcore_datasets.rings:Rings",
          "Concentric rings with Gaussian noise; exact log_prob (Rice/Bessel form)."),
        C("spirals", "ebmcore_datasets.spirals:Spirals",
          "Interleaved noisy spiral arms (FFJORD's 2spirals).", aliases=("two_spirals",)),
        C("pinwheel", "ebmcore_datasets.pinwheel:Pinwheel",
          "Curved Gaussian blades arranged like a pinwheel."),
        C("digits", "ebmcore_datasets.images:Digits",
          "scikit-learn's 1,797 8x8 handwritten digits (17 levels); fixed train/test split."),
        C("mnist", "ebmcore_datasets.images:MNIST",
          "MNIST 28x28 handwritten digits read from local IDX files (256 levels)."),
        C("fashion_mnist", "ebmcore_datasets.images:FashionMNIST",
          "Fashion-MNIST 28x28 clothing images read from local IDX files (256 levels)."),
    ]
