"""Built-in plugin: datasets. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets. Each
data set also brings its run recipe (:attr:`ebmcore.Component.recipe`), the model, loss,
sampler and settings that ``ebmcore train --dataset NAME`` starts from.
"""

from __future__ import annotations

import copy
from typing import Any

import ebmcore

EBMCORE_PLUGIN_API = 1

#: Half-width of the toy data sets' evaluation box, ``[-5, 5]²``.
TOY_HALF_WIDTH = 5.0

#: The recipe of the 2-D toy data sets (and so of ``ebmcore demo``): an ``mlp`` trained by
#: persistent contrastive divergence with Langevin negatives, evaluated on ``[-5, 5]²``.
#: The field losses' ``mlp_field`` sees 64 random Fourier features of the point at scale 4
#: beside it (``input_features``): they let flow matching resolve thin rings and the
#: checkerboard's edges (likelihood gap on ``rings`` 0.071 against the plain field's 0.665;
#: docs/training-results.md, benchmarks/generative.py).
_TOY_FIELD: dict[str, Any] = {
    "model": {"name": "mlp_field", "params": {"hidden": [256, 256, 256], "input_features": 64,
                                              "input_scale": 4.0}},
}
TOY_RECIPE: dict[str, Any] = {
    "model": {"name": "mlp", "params": {}},
    "loss": {"name": "pcd", "params": {}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.01}},
    "evaluate": {"bounds": [-TOY_HALF_WIDTH, TOY_HALF_WIDTH]},
    "losses": {name: _TOY_FIELD for name in ("flow_matching", "equilibrium_matching",
                                            "diffusion")},
}

#: The recipe of the image data sets: a ``conv`` energy correcting the data's Gaussian
#: (``confine="gaussian"``), persistent contrastive divergence whose chains restart from that
#: Gaussian, and Langevin steps preconditioned by its covariance (docs/training-results.md
#: measures it).
IMAGE_RECIPE: dict[str, Any] = {
    "model": {"name": "conv", "params": {"channels": [32, 64], "confine": "gaussian"}},
    "loss": {"name": "pcd", "params": {"k": 20, "init": "base", "alpha": 0.1}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.2, "precondition": True}},
    "train": {"steps": 1500, "batch_size": 128, "lr": 1e-3, "log_every": 50,
              "checkpoint_every": 500, "picture_every": 250},
    "evaluate": {"ais_chains": 200, "ais_temps": 500},
    "sample": {"n_chains": 500, "n_steps": 300, "burn_in": 0, "thin": 5, "backend": "auto",
               "trace_chains": 64},
}

#: What the simulation-free losses change on the 8×8 digits (the ``"losses"`` section of a
#: recipe: :mod:`ebmcore.recipes`), measured in docs/training-results.md and benchmarks/
#: digits_generation.py: a wide MLP field on the flattened images, Adam at 1e-3 with an
#: exponential moving average of the weights, samples by Heun's method, and the flow's exact
#: likelihood by RK4 over all 359 held-out images.
_DIGITS_FIELD: dict[str, Any] = {
    "model": {"name": "mlp_field", "params": {"hidden": [512, 512, 512]}},
    "sampler": {"name": "flow", "params": {"integrator": "heun", "steps": 50}},
    "train": {"steps": 10000, "batch_size": 128, "lr": 1e-3, "ema": 0.999},
    "evaluate": {"integrator": {"name": "rk4", "params": {"steps": 20}},
                 "likelihood_points": 359},
    "sample": {"n_chains": 1000},
}
#: Equilibrium matching's time-free field is sampled by integrating it for 0.35 time units
#: (Heun, 50 steps): longer descents collapse onto the landscape's minima (more confident
#: samples, a Fréchet ratio of 36 at 1.0), shorter ones stop short of the data.
DIGITS_RECIPE: dict[str, Any] = {
    **IMAGE_RECIPE,
    "losses": {
        # batch 256 at 2e-3: 50 % confident samples (clipped Fréchet ratio 1.15) against
        # 36 % (1.70) for batch 128 at 1e-3, in the same 10,000 steps
        "flow_matching": {**_DIGITS_FIELD,
                          "train": {"steps": 10000, "batch_size": 256, "lr": 2e-3,
                                    "ema": 0.999}},
        "equilibrium_matching": {
            **_DIGITS_FIELD,
            "sampler": {"name": "flow",
                        "params": {"integrator": "heun", "steps": 50, "t_span": [0.0, 0.35]}}},
    },
}

#: The 28×28 data sets' recipe: a third convolution block.
_WIDE_IMAGE_RECIPE: dict[str, Any] = copy.deepcopy(IMAGE_RECIPE)
_WIDE_IMAGE_RECIPE["model"]["params"]["channels"] = [32, 64, 128]


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
