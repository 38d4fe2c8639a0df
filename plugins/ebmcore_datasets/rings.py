"""Concentric rings blurred by isotropic Gaussian noise, with an exact density."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ebmcore_datasets._common import (
    ToyDataset,
    check_noise,
    check_x,
    choice,
    normal,
    positive_floats,
    uniform,
)


class Rings(ToyDataset):
    """Points on concentric circles plus isotropic Gaussian noise.

    Each point picks ring ``k`` with probability ``w_k``, an angle ``θ ~ U(0, 2π)``, and adds
    noise: ``x = r_k (cos θ, sin θ) + σ ε`` with ``ε ~ N(0, I)``. This is FFJORD's "rings"
    (radii 0.75, 1.5, 2.25, 3, noise 0.08, equal weights), and its density is closed form:
    a uniform ring convolved with a Gaussian integrates over the angle to a Bessel function,
    ``p_k(x) = exp(-(|x|² + r_k²) / 2σ²) I₀(|x| r_k / σ²) / (2πσ²)``, a Rice distribution
    for ``|x|`` divided by ``2π|x|``. ``log_prob`` uses the exponentially scaled ``i0e``, so
    ``log p_k(x) = -(|x| - r_k)² / 2σ² + log i0e(|x| r_k / σ²) - log 2πσ²`` never overflows.

    Args:
        radii: Radius of each ring.
        noise: Standard deviation ``σ`` of the Gaussian noise along each axis.
        weights: Probability of each ring (positive, normalised here); ``None`` for equal.
    """

    def __init__(self, radii: Sequence[float] = (0.75, 1.5, 2.25, 3.0), noise: float = 0.08,
                 weights: Sequence[float] | None = None) -> None:
        self.radii = positive_floats("radii", radii)
        self.noise = check_noise("noise", noise)
        if weights is None:
            w = torch.full((len(self.radii),), 1.0 / len(self.radii), dtype=torch.float64)
        else:
            values = positive_floats("weights", weights)
            if len(values) != len(self.radii):
                raise ValueError(f"weights must hold one value per radius ({len(self.radii)}), "
                                 f"got {len(values)}")
            w = torch.tensor(values, dtype=torch.float64)
            w = w / w.sum()
        self.weights = w
        self._radii = torch.tensor(self.radii, dtype=torch.float64)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        r = self._radii.to(generator.device)[choice(n, len(self.radii), generator, self.weights)]
        theta = 2.0 * math.pi * uniform(n, generator)
        points = r[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
        return points + self.noise * normal(n, generator, 2)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log density ``(B,)`` at points ``x`` of shape ``(B, 2)``."""
        x = check_x(x)
        rho = x.norm(dim=1, keepdim=True)  # (B, 1)
        radii = self._radii.to(device=x.device, dtype=x.dtype)
        log_w = self.weights.log().to(device=x.device, dtype=x.dtype)
        var = self.noise**2
        log_comp = (-(rho - radii).pow(2) / (2.0 * var)
                    + torch.special.i0e(rho * radii / var).log()
                    - math.log(2.0 * math.pi * var))
        return torch.logsumexp(log_comp + log_w, dim=1)
