"""A 2-D data set with a closed-form density and a declared evaluation box."""

from __future__ import annotations

import math

import torch
from ebmcore import Dataset
from ebmcore.validation import check_int, check_points, check_positive


class GaussianCross(Dataset):
    """An equal mixture of two correlated Gaussians crossing at the origin: an "X".

    Both components have standard deviation ``scale`` along each axis and correlation
    ``+correlation`` and ``-correlation``, so the density, and its log, are known exactly.

    Args:
        scale: Standard deviation of each coordinate (positive).
        correlation: Correlation of the first component, in ``(0, 1)``.
    """

    event_shape = (2,)

    def __init__(self, scale: float = 1.5, correlation: float = 0.9) -> None:
        self.scale = check_positive("scale", scale)
        if not 0.0 < float(correlation) < 1.0:
            raise ValueError(f"correlation must lie in (0, 1), got {correlation!r}")
        self.correlation = float(correlation)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points ``(n, 2)`` (float32).

        Args:
            n: Number of points.
            generator: Source of randomness; ``None`` uses a private generator seeded from
                the OS, never torch's global one.
        """
        n = check_int("n", n, minimum=1)
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        sign = torch.where(torch.rand(n, generator=generator, dtype=torch.float64) < 0.5,
                           1.0, -1.0)
        rho = self.correlation
        x1 = z[:, 0]
        x2 = sign * rho * z[:, 0] + math.sqrt(1.0 - rho**2) * z[:, 1]
        return (self.scale * torch.stack([x1, x2], dim=1)).float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log density ``(B,)`` at points ``x`` of shape ``(B, 2)``."""
        x = check_points("x", x, self.event_shape)
        u, v = x[:, 0] / self.scale, x[:, 1] / self.scale
        rho = self.correlation
        one_minus = 1.0 - rho**2
        log_norm = -math.log(2.0 * math.pi * self.scale**2) - 0.5 * math.log(one_minus)
        quad = torch.stack([(u * u - 2 * s * rho * u * v + v * v) / one_minus
                            for s in (1.0, -1.0)], dim=1)
        return torch.logsumexp(-0.5 * quad, dim=1) + log_norm - math.log(2.0)

    @property
    def evaluation_box(self) -> tuple[tuple[float, float], ...]:
        """Five standard deviations either side of the origin on both axes."""
        half = 5.0 * self.scale
        return ((-half, half), (-half, half))
