"""Built-in plugin: datasets. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets. Each
data set also brings its run recipe (:attr:`ebmcore.Component.recipe`), the model, loss,
sampler and settings that ``ebmcore train --dataset NAME`` starts from.
"""

from __future__ import annotations

import ebmcore
from ebmcore_datasets.image_recipes import _WIDE_IMAGE_RECIPE, DIGITS_RECIPE, IMAGE_RECIPE
from ebmcore_datasets.toy_recipe import TOY_HALF_WIDTH, TOY_RECIPE

EBMCORE_PLUGIN_API = 1

__all__ = ["DIGITS_RECIPE", "IMAGE_RECIPE", "TOY_HALF_WIDTH", "TOY_RECIPE"]


@ebmcore.hookimpl
def ebmcore_datasets() -> list[ebmcore.Component]:
    """Return the built-in datasets."""
    C = ebmcore.Component
    toy = TOY_RECIPE
    return [
        C("eight_gaussians", "ebmcore_datasets.gaussians:EightGaussians",
          "Gaussians evenly spaced on a circle (FFJORD's 8gaussians); exact log_prob.",
          recipe={**toy, "default": True}),
        C("two_moons", "ebmcore_datasets.moons:TwoMoons",
          "Two interleaving noisy half circles.", aliases=("moons",), recipe=toy),
        C("swiss_roll", "ebmcore_datasets.swiss_roll:SwissRoll",
          "A noisy 2-D Swiss roll spiral.", aliases=("swissroll",), recipe=toy),
        C("checkerboard", "ebmcore_datasets.checkerboard:Checkerboard",
          "Uniform on the black squares of a checkerboard; exact log_prob.", recipe=toy),
        C("rings", "ebmcore_datasets.rings:Rings",
          "Concentric rings with Gaussian noise; exact log_prob (Rice/Bessel form).",
          recipe=toy),
        C("spirals", "ebmcore_datasets.spirals:Spirals",
          "Interleaved noisy spiral arms (FFJORD's 2spirals).", aliases=("two_spirals",),
          recipe=toy),
        C("pinwheel", "ebmcore_datasets.pinwheel:Pinwheel",
          "Curved Gaussian blades arranged like a pinwheel.", recipe=toy),
        C("digits", "ebmcore_datasets.images:Digits",
          "scikit-learn's 1,797 8x8 handwritten digits (17 levels); fixed train/test split.",
          recipe=DIGITS_RECIPE),
        C("mnist", "ebmcore_datasets.images:MNIST",
          "MNIST 28x28 handwritten digits read from local IDX files (256 levels).",
          recipe=_WIDE_IMAGE_RECIPE),
        C("fashion_mnist", "ebmcore_datasets.images:FashionMNIST",
          "Fashion-MNIST 28x28 clothing images read from local IDX files (256 levels).",
          recipe=_WIDE_IMAGE_RECIPE),
    ]
