"""Curved Gaussian blades arranged like a pinwheel."""

from __future__ import annotations

import math

import torch

from ebmcore.validation import check_int, check_positive
from ebmcore_datasets._common import ToyDataset, check_noise, choice, normal


class Pinwheel(ToyDataset):
    """Gaussian blobs bent into blades that curl around the origin.

    Each point draws ``f ~ N((1, 0), diag(radial_std², tangential_std²))`` and a blade
    ``k`` uniformly; it is rotated clockwise by ``2πk / n_blades + rate · exp(f₀)`` and
    multiplied by ``scale``. The defaults are FFJORD's "pinwheel" (5 blades, stds 0.3 and 0.1, rate
    0.25, scale 2). The map is not invertible in closed form, so there is no ``log_prob``.

    Args:
        n_blades: Number of blades.
        radial_std: Standard deviation along the blade.
        tangential_std: Standard deviation across the blade.
        rate: How strongly a blade curls with distance from the origin.
        scale: Factor applied last.
    """

    def __init__(self, n_blades: int = 5, radial_std: float = 0.3,
                 tangential_std: float = 0.1, rate: float = 0.25, scale: float = 2.0) -> None:
        self.n_blades = check_int("n_blades", n_blades, minimum=1)
        self.radial_std = check_noise("radial_std", radial_std)
        self.tangential_std = check_noise("tangential_std", tangential_std)
        self.rate = check_positive("rate", rate, allow_zero=True)
        self.scale = check_positive("scale", scale)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        z = normal(n, generator, 2)
        f0 = 1.0 + self.radial_std * z[:, 0]
        f1 = self.tangential_std * z[:, 1]
        blade = choice(n, self.n_blades, generator).to(torch.float64)
        angle = 2.0 * math.pi * blade / self.n_blades + self.rate * f0.exp()
        c, s = angle.cos(), angle.sin()
        # clockwise, as FFJORD's einsum('ti,tij->tj', f, [[c, -s], [s, c]]) rotates
        points = torch.stack([c * f0 + s * f1, c * f1 - s * f0], dim=1)
        return self.scale * points
