"""A 2-D Swiss roll: one arm of an Archimedean spiral with Gaussian noise."""

from __future__ import annotations

import math

import torch

from ebmcore.validation import check_positive
from ebmcore_datasets._common import ToyDataset, check_noise, normal, uniform


class SwissRoll(ToyDataset):
    """The spiral ``(t cos t, t sin t)`` with ``t ~ U(t_min, t_max)`` plus Gaussian noise.

    This is scikit-learn's ``make_swiss_roll`` projected onto its x–z plane; the defaults
    are FFJORD's "swissroll" (``t`` in ``[1.5π, 4.5π]``, noise 1, everything scaled by
    1/5). The density is a curve convolved with a Gaussian, with no closed form, so there
    is no ``log_prob``.

    Args:
        noise: Standard deviation of the Gaussian noise, before scaling.
        scale: Factor applied to every point after the noise.
        t_min: Smallest spiral parameter ``t``.
        t_max: Largest spiral parameter ``t``; must exceed ``t_min``.
    """

    def __init__(self, noise: float = 1.0, scale: float = 0.2, t_min: float = 1.5 * math.pi,
                 t_max: float = 4.5 * math.pi) -> None:
        self.noise = check_noise("noise", noise)
        self.scale = check_positive("scale", scale)
        self.t_min = check_positive("t_min", t_min, allow_zero=True)
        self.t_max = check_positive("t_max", t_max)
        if self.t_max <= self.t_min:
            raise ValueError(f"t_max must exceed t_min, got t_min={t_min!r}, t_max={t_max!r}")

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        t = self.t_min + (self.t_max - self.t_min) * uniform(n, generator)
        points = torch.stack([t * t.cos(), t * t.sin()], dim=1)
        points = points + self.noise * normal(n, generator, 2)
        return self.scale * points
