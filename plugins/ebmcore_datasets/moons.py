"""Two interleaving half circles (the "two moons" toy data)."""

from __future__ import annotations

import math

import torch

from ebmcore.validation import check_positive
from ebmcore_datasets._common import ToyDataset, check_noise, normal, uniform


class TwoMoons(ToyDataset):
    """Two interleaving half circles with Gaussian noise.

    Each point picks a moon with probability 1/2 and an angle ``t ~ U(0, π)``; the upper
    moon is ``(cos t, sin t)``, the lower ``(1 - cos t, 0.5 - sin t)`` (scikit-learn's
    ``make_moons``). Gaussian noise of standard deviation ``noise`` is added, then the
    points are mapped by ``scale * p + shift``. The defaults are FFJORD's "moons"
    (noise 0.1, scale 2, shift (-1, -0.2)), whose mean is ``(0, 0.3)``. The density is a
    curve convolved with a Gaussian, which has no closed form, so there is no ``log_prob``.

    Args:
        noise: Standard deviation of the Gaussian noise, before scaling.
        scale: Factor applied to every point after the noise.
        shift: Offset ``(dx, dy)`` added last.
    """

    def __init__(self, noise: float = 0.1, scale: float = 2.0,
                 shift: tuple[float, float] = (-1.0, -0.2)) -> None:
        self.noise = check_noise("noise", noise)
        self.scale = check_positive("scale", scale)
        if isinstance(shift, (str, bytes)) or len(shift) != 2:
            raise ValueError(f"shift must be a pair (dx, dy), got {shift!r}")
        self.shift = tuple(float(s) for s in shift)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        u = uniform(n, generator, 2)
        t = math.pi * u[:, 0]
        lower = (u[:, 1] < 0.5).to(torch.float64)
        # upper: (cos t, sin t); lower: (1 - cos t, 0.5 - sin t)
        sign = 1.0 - 2.0 * lower
        points = torch.stack([lower + sign * t.cos(), 0.5 * lower + sign * t.sin()], dim=1)
        points = points + self.noise * normal(n, generator, 2)
        shift = torch.tensor(self.shift, dtype=torch.float64, device=points.device)
        return self.scale * points + shift
