"""The built-in interpolants: linear, cosine and variance-preserving paths.

Each gives the four coefficients of ``x_t = alpha(t) x1 + sigma(t) x0`` in closed form, with
``t = 0`` noise and ``t = 1`` data (:mod:`ebmcore.interpolant`).
"""

from __future__ import annotations

import math

import torch

from ebmcore.interpolant import Coefficients, Interpolant

__all__ = ["CosineInterpolant", "LinearInterpolant", "VPInterpolant"]


class LinearInterpolant(Interpolant):
    """The straight path ``x_t = t x1 + (1 - t) x0`` with constant velocity ``x1 - x0``
    (rectified flow; the conditional optimal-transport path of flow matching)."""

    def coefficients(self, t: torch.Tensor) -> Coefficients:
        """Return ``(t, 1 - t, 1, -1)`` shaped like ``t``."""
        one = torch.ones_like(t)
        return t, 1.0 - t, one, -one


class CosineInterpolant(Interpolant):
    """The trigonometric path ``x_t = sin(pi t / 2) x1 + cos(pi t / 2) x0``, which keeps
    ``alpha^2 + sigma^2 = 1`` (variance preserving for unit-variance data)."""

    def coefficients(self, t: torch.Tensor) -> Coefficients:
        """Return ``(sin, cos, pi/2 cos, -pi/2 sin)`` of ``pi t / 2``."""
        angle = 0.5 * math.pi * t
        sin, cos = torch.sin(angle), torch.cos(angle)
        return sin, cos, 0.5 * math.pi * cos, -0.5 * math.pi * sin


class VPInterpolant(Interpolant):
    """The variance-preserving path of Song et al.'s VP SDE, in this library's time direction.

    With the diffusion time ``s = 1 - t`` and the linear schedule
    ``beta(s) = beta_min + s (beta_max - beta_min)``, the data weight is
    ``alpha = exp(-B(s) / 2)`` with ``B(s) = beta_min s + (beta_max - beta_min) s^2 / 2``, and
    ``sigma = sqrt(1 - alpha^2)``. At ``t = 0`` the path is not exactly noise (``alpha(0) =
    exp(-B(1) / 2)``, about 0.0066 with the defaults); at ``t = 1`` the velocity is singular
    (``sigma' -> -inf``), so losses draw ``t`` below 1.

    Args:
        beta_min: The noise rate at the data end (``t = 1``), positive.
        beta_max: The noise rate at the noise end (``t = 0``), at least ``beta_min``.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        for label, value in (("beta_min", beta_min), ("beta_max", beta_max)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"vp interpolant: {label} must be a positive number, "
                                 f"got {value!r}")
        if beta_max < beta_min:
            raise ValueError(f"vp interpolant: beta_max ({beta_max}) must be at least "
                             f"beta_min ({beta_min})")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def coefficients(self, t: torch.Tensor) -> Coefficients:
        """Return ``(alpha, sigma, d_alpha, d_sigma)`` of the VP path at ``t``."""
        s = 1.0 - t
        spread = self.beta_max - self.beta_min
        integral = self.beta_min * s + 0.5 * spread * s * s
        beta = self.beta_min + spread * s
        alpha = torch.exp(-0.5 * integral)
        sigma = torch.sqrt(-torch.expm1(-integral))  # sqrt(1 - alpha^2), exact near t = 1
        d_alpha = 0.5 * beta * alpha  # d/dt exp(-B(1 - t) / 2), as dB/dt = -beta
        d_sigma = -alpha * d_alpha / sigma
        return alpha, sigma, d_alpha, d_sigma

    def __repr__(self) -> str:
        return f"VPInterpolant(beta_min={self.beta_min}, beta_max={self.beta_max})"
