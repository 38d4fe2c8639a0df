"""Built-in plugin: losses. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

from typing import Any

import ebmcore

EBMCORE_PLUGIN_API = 1

#: What score matching changes in a run whose model is the ``mlp``. Exact and sliced score
#: matching fix a density only up to the relative weights of regions the data separates;
#: the mlp's default four layers shape those regions independently and the weights go
#: astray (a gap of 6,785 nats on ``checkerboard``), while two layers' smoothness ties them
#: together. Clipping the gradient norm at 1 helps sliced score matching on all three 2-D
#: data sets (docs/training-results.md).
_SCORE_MATCHING_RECIPE: dict[str, Any] = {"model": {"name": "mlp",
                                                    "params": {"hidden": [128, 128]}}}
_SLICED_RECIPE: dict[str, Any] = {**_SCORE_MATCHING_RECIPE, "train": {"grad_clip": 1.0}}

#: What the field losses change in a run: a time-conditioned MLP field (three layers of 256,
#: the plain flow-matching baseline of the 2-D data sets) trained with Adam at 1e-3 and an
#: average of the weights (EMA 0.999), and no MCMC sampling settings (a field is sampled by
#: integrating it: the ``flow`` sampler). The run scores held-out points by the flow's
#: log-likelihood, integrated with ``rk4``. The 2-D data sets' recipe adds Fourier features
#: of the input (its ``"losses"`` section, ``ebmcore_datasets.TOY_RECIPE``): after 2,000
#: steps on ``rings`` they cut the likelihood gap from 0.88 to 0.52-0.55 at scales 3-5
#: (docs/training-results.md); on images they are untested, so they are no default here.
_FIELD_RECIPE: dict[str, Any] = {
    "model": {"name": "mlp_field", "params": {"hidden": [256, 256, 256]}},
    "sampler": {"name": "flow", "params": {}},
    "train": {"steps": 20000, "batch_size": 256, "lr": 1e-3, "ema": 0.999},
    "evaluate": {"integrator": "rk4", "likelihood_points": 2000},
}
#: Energy matching trains the data set's own energy model (its wall keeps it a density):
#: 2,000 flow-only steps, then 1,000 with the contrastive term (the paper's 2-D schedule).
_ENERGY_MATCHING_RECIPE: dict[str, Any] = {
    "loss": {"params": {"switch_step": 2000}},
    "train": {"steps": 3000, "batch_size": 256, "lr": 1e-3},
}

# name, target, summary, aliases, takes a sampler, recipe
_LOSSES: list[tuple[str, str, str, tuple[str, ...], bool, dict[str, Any] | None]] = [
    ("cd", "ebmcore_losses.contrastive:ContrastiveDivergence",
     "Contrastive divergence: k sampler steps from data or noise give the negatives.",
     ("contrastive_divergence",), True, None),
    ("pcd", "ebmcore_losses.contrastive:PersistentContrastiveDivergence",
     "Persistent CD with a replay buffer that restarts a fraction of chains from noise.",
     ("persistent_cd",), True, None),
    ("pt_cd", "ebmcore_losses.contrastive:TemperedContrastiveDivergence",
     "Contrastive divergence whose negatives come from parallel tempering.",
     ("tempered_cd",), True, None),
    ("score_matching", "ebmcore_losses.score_matching:ScoreMatching",
     "Exact Hyvärinen score matching; the Hessian trace costs one backward per dimension.",
     ("sm",), False, _SCORE_MATCHING_RECIPE),
    ("sliced_score_matching", "ebmcore_losses.score_matching:SlicedScoreMatching",
     "Sliced score matching with Gaussian projections (variance-reduced by default).",
     ("ssm",), False, _SLICED_RECIPE),
    ("denoising_score_matching", "ebmcore_losses.score_matching:DenoisingScoreMatching",
     "Denoising score matching at one or several noise levels.", ("dsm",), False, None),
    ("nce", "ebmcore_losses.nce:NoiseContrastiveEstimation",
     "Noise-contrastive estimation with a learned log-normaliser.",
     ("noise_contrastive_estimation",), False, None),
    ("flow_matching", "ebmcore_losses.flow_matching:FlowMatching",
     "Flow matching on an interpolant's path: velocity, score or noise prediction.",
     ("fm", "cfm"), False, _FIELD_RECIPE),
    ("diffusion", "ebmcore_losses.flow_matching:Diffusion",
     "Multi-scale denoising on the VP path (DDPM's noise-prediction loss, random t).",
     ("ddpm",), False, _FIELD_RECIPE),
    ("equilibrium_matching", "ebmcore_losses.equilibrium_matching:EquilibriumMatching",
     "Equilibrium matching: one time-invariant field, or -grad E of an energy.",
     ("eqm",), False, _FIELD_RECIPE),
    ("energy_matching", "ebmcore_losses.energy_matching:EnergyMatching",
     "Energy matching: OT flow on -grad E far from data, contrastive near it.",
     ("em",), False, _ENERGY_MATCHING_RECIPE),
]


@ebmcore.hookimpl
def ebmcore_losses() -> list[ebmcore.Component]:
    """Return the built-in losses."""
    return [ebmcore.Component(name, target, summary, aliases, takes_sampler=sampler,
                              recipe=recipe)
            for name, target, summary, aliases, sampler, recipe in _LOSSES]
