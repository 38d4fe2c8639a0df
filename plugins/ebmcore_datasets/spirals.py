"""Interleaved spiral arms (the "2 spirals" toy data)."""

from __future__ import annotations

import math

import torch

from ebmcore.validation import check_int, check_positive
from ebmcore_datasets._common import ToyDataset, check_noise, choice, normal, uniform


class Spirals(ToyDataset):
    """Archimedean spiral arms rotated evenly about the origin, with Gaussian noise.

    Along each arm ``t = turns · 2π · sqrt(u)`` with ``u ~ U(0, 1)`` (uniform in arc area,
    as in FFJORD's "2spirals"), the unrotated arm is ``(-t cos t, t sin t)``, arm ``k`` is
    rotated by ``2πk / n_arms``, the point is multiplied by ``scale`` and Gaussian noise of
    standard deviation ``noise`` is added. The defaults follow FFJORD (two arms of 1.5
    turns, scale 1/3, noise 0.1) without its extra uniform jitter. There is no closed-form
    density, so there is no ``log_prob``.

    Args:
        n_arms: Number of arms.
        turns: Number of turns of each arm.
        scale: Factor applied to the noiseless spiral.
        noise: Standard deviation of the Gaussian noise, added after scaling.
    """

    def __init__(self, n_arms: int = 2, turns: float = 1.5, scale: float = 1.0 / 3.0,
                 noise: float = 0.1) -> None:
        self.n_arms = check_int("n_arms", n_arms, minimum=1)
        self.turns = check_positive("turns", turns)
        self.scale = check_positive("scale", scale)
        self.noise = check_noise("noise", noise)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        t = self.turns * 2.0 * math.pi * uniform(n, generator).sqrt()
        arm = choice(n, self.n_arms, generator).to(torch.float64)
        phi = 2.0 * math.pi * arm / self.n_arms
        x, y = -t * t.cos(), t * t.sin()
        c, s = phi.cos(), phi.sin()
        points = torch.stack([c * x - s * y, s * x + c * y], dim=1)
        points = self.scale * points + self.noise * normal(n, generator, 2)
        return points
