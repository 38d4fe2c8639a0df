"""The 2-D toy data sets' run recipe (and so ``ebmcore demo``'s), with its per-loss tuning."""

from __future__ import annotations

from typing import Any

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
#: Flow matching also trains four times as long with Adam's rate decayed to 0 along a half
#: cosine (``lr_schedule``): the noise of a constant rate blurs the field at the scale of a
#: histogram cell. A million samples' TV / floor, predicted from the exact flow density by
#: benchmarks/flow_grid_tv.py, falls from 3.14 / 5.09 / 6.14 to 1.83 / 3.18 / 2.94 on
#: eight_gaussians / checkerboard / rings (measured by sampling: 1.81 on eight_gaussians,
#: the 2x goal met there only), and the NLL gaps from 0.015 / 0.098 / 0.071 to
#: 0.007 / 0.053 / 0.015 nats, in 400-450 s of one core (docs/training-results.md).
_TOY_FLOW_MATCHING: dict[str, Any] = {
    **_TOY_FIELD, "train": {"steps": 80000, "lr_schedule": "cosine"},
}
#: Equilibrium matching's time-free field is ``ct_multiplier`` (4) times a velocity far from
#: the data, so a descent of length 1/4 carries noise as far as the flow would in unit time;
#: a longer one collapses the 2-D data onto the field's few attractors (TV / floor on
#: ``eight_gaussians`` 2.31 at span 0.25, 5.08 at 0.5; docs/training-results.md).
_TOY_EQUILIBRIUM: dict[str, Any] = {
    **_TOY_FIELD, "sampler": {"name": "flow", "params": {"t_span": [0.0, 0.25]}},
}
#: Energy matching trains ``E = V / eps_max`` (its density ``exp(-E)``; eps_max = 0.15),
#: whose network is as steep as the transport potential ``V`` over ``eps_max``: the mlp's
#: wall narrows by ``sqrt(eps_max)`` (0.25 -> 0.1) to stay as steep beside it (with the
#: default wall 76 % of the mass sat outside ``[-5, 5]²`` after 1,000 flow steps). After the
#: paper's 2,000 flow steps, the contrastive phase runs 2,000 steps as pcd does: persistent
#: negatives from a replay buffer (the paper's fresh chains, half of them swept from noise at
#: zero temperature, made the checkerboard's gap grow), all of them counted (no trim), the
#: energy penalty ``alpha`` (without it the energies ran away on rings), ``lambda_cd`` 100
#: (the flow term, supervised inside the data's region, bends the density) and Adam at 3e-3.
#: Whole-plane NLL gaps 0.104 / 0.154 / 0.056 (pcd 0.108 / 0.228 / 0.246) on eight_gaussians /
#: checkerboard / rings in 140-200 s; docs/training-results.md has the runs and the screens.
_TOY_ENERGY_MATCHING: dict[str, Any] = {
    "model": {"params": {"wall_width": 0.1}},
    "loss": {"params": {"switch_step": 2000, "lambda_cd": 100.0, "noise_fraction": 0.0,
                        "buffer_size": 10000, "cd_trim_fraction": 0.0,
                        "alpha": 0.1, "n_langevin_steps": 20, "langevin_dt": 0.04}},
    "train": {"steps": 4000, "lr": 3e-3},
}
TOY_RECIPE: dict[str, Any] = {
    "model": {"name": "mlp", "params": {}},
    "loss": {"name": "pcd", "params": {}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.01}},
    "evaluate": {"bounds": [-TOY_HALF_WIDTH, TOY_HALF_WIDTH]},
    # the samples a run writes come from parallel tempering, not from training's Langevin:
    # the trained energies are multimodal and Langevin's chains stay in their modes (max
    # R-hat 3.2 on the demo); the ladder reaches 32 because rings' chains stayed on their rings
    # at 8 (max R-hat 1.115 against 1.032); measured in docs/training-results.md#samples-that-mix
    "sample": {"sampler": {"name": "parallel_tempering",
                           "params": {"base": "mala", "temperatures": [1, 2, 4, 8, 16, 32]}},
               "burn_in": 300, "n_steps": 500},
    "losses": {"flow_matching": _TOY_FLOW_MATCHING, "diffusion": _TOY_FIELD,
               "equilibrium_matching": _TOY_EQUILIBRIUM,
               "energy_matching": _TOY_ENERGY_MATCHING},
}
