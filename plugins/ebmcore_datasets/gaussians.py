"""Isotropic Gaussians evenly spaced on a circle (the "8 Gaussians" toy data)."""

from __future__ import annotations

import math

import torch

from ebmcore.validation import check_int, check_positive
from ebmcore_datasets._common import (
    LOG_2PI,
    ToyDataset,
    check_noise,
    check_x,
    choice,
    normal,
)


class EightGaussians(ToyDataset):
    """An equal-weight mixture of isotropic Gaussians centred evenly on a circle.

    Component ``k`` has mean ``radius * (cos(2πk/K), sin(2πk/K))`` and covariance
    ``std² I``. The defaults are FFJORD's "8gaussians" (centres at distance 4, noise 0.5,
    everything divided by √2), so the density is known in closed form.

    Args:
        n_components: Number of Gaussians ``K`` on the circle.
        radius: Distance of each centre from the origin.
        std: Standard deviation of each Gaussian along every axis.
    """

    def __init__(self, n_components: int = 8, radius: float = 2.0 * math.sqrt(2.0),
                 std: float = 0.5 / math.sqrt(2.0)) -> None:
        self.n_components = check_int("n_components", n_components, minimum=1)
        self.radius = check_positive("radius", radius, allow_zero=True)
        self.std = check_noise("std", std)
        angles = 2.0 * math.pi * torch.arange(self.n_components, dtype=torch.float64)
        angles = angles / self.n_components
        self.centers = self.radius * torch.stack([angles.cos(), angles.sin()], dim=1)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        k = choice(n, self.n_components, generator)
        points = self.centers.to(generator.device)[k] + self.std * normal(n, generator, 2)
        return points

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log density ``(B,)`` at points ``x`` of shape ``(B, 2)``."""
        x = check_x(x)
        centers = self.centers.to(device=x.device, dtype=x.dtype)
        sq = (x[:, None, :] - centers[None]).pow(2).sum(-1)  # (B, K)
        log_comp = -0.5 * sq / self.std**2 - LOG_2PI - 2.0 * math.log(self.std)
        return torch.logsumexp(log_comp, dim=1) - math.log(self.n_components)
