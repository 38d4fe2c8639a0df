"""Built-in plugin: losses. Registers through the ``ebmcore`` entry-point group.

Its root module stays light: components are named as lazy ``"module:attr"`` targets.
"""

from __future__ import annotations

import ebmcore

EBMCORE_PLUGIN_API = 1

_LOSSES = [
    ("cd", "ebmcore_losses.contrastive:ContrastiveDivergence",
     "Contrastive divergence: k sampler steps from data or noise give the negatives.",
     ("contrastive_divergence",)),
    ("pcd", "ebmcore_losses.contrastive:PersistentContrastiveDivergence",
     "Persistent CD with a replay buffer that restarts a fraction of chains from noise.",
     ("persistent_cd",)),
    ("pt_cd", "ebmcore_losses.contrastive:TemperedContrastiveDivergence",
     "Contrastive divergence whose negatives come from parallel tempering.",
     ("tempered_cd",)),
    ("score_matching", "ebmcore_losses.score_matching:ScoreMatching",
     "Exact Hyvärinen score matching; the Hessian trace costs one backward per dimension.",
     ("sm",)),
    ("sliced_score_matching", "ebmcore_losses.score_matching:SlicedScoreMatching",
     "Sliced score matching with Gaussian projections (variance-reduced by default).",
     ("ssm",)),
    ("denoising_score_matching", "ebmcore_losses.score_matching:DenoisingScoreMatching",
     "Denoising score matching at one or several noise levels.", ("dsm",)),
    ("nce", "ebmcore_losses.nce:NoiseContrastiveEstimation",
     "Noise-contrastive estimation with a learned log-normaliser.",
     ("noise_contrastive_estimation",)),
]


@ebmcore.hookimpl
def ebmcore_losses() -> list[ebmcore.Component]:
    """Return the built-in losses."""
    return [ebmcore.Component(name, target, summary, aliases)
            for name, target, summary, aliases in _LOSSES]
