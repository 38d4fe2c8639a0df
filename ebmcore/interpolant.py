"""The interpolant contract: the path that carries noise to data.

Time runs from noise to data: at ``t = 0`` a point is noise ``x0 ~ N(0, I)``, at ``t = 1`` it
is a datum ``x1``. An :class:`Interpolant` names the Gaussian path

    x_t = alpha(t) * x1 + sigma(t) * x0,        u_t = alpha'(t) * x1 + sigma'(t) * x0,

through its four coefficients (:meth:`Interpolant.coefficients`); the base class derives the
conditional sample (:meth:`Interpolant.sample`) and the conversions between the three things a
field may predict — velocity, score and noise — from them.

The conversions rest on the path being Gaussian given the datum: with ``eps`` the noise a
field predicts (``E[x0 | x_t]``), the score is ``-eps / sigma`` and the velocity is
``(alpha' * x_t + (alpha * sigma' - alpha' * sigma) * eps) / alpha``. They are singular where
the path is: velocity and noise from a score where ``sigma = 0`` (the data end), and velocity
from noise or a score where ``alpha = 0`` (the noise end of the linear and cosine paths).
"""

from __future__ import annotations

import torch

__all__ = ["Interpolant", "expand_like"]

Coefficients = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def expand_like(coefficient: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``coefficient`` (shaped like a time, ``()`` or ``(B,)``) reshaped to broadcast
    against a batch ``x`` of shape ``(B, *event_shape)``."""
    if coefficient.dim() == 0:
        return coefficient
    if coefficient.dim() != 1 or coefficient.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a scalar or have shape (B,) = ({x.shape[0]},) to match x "
                         f"of shape {tuple(x.shape)}, got shape {tuple(coefficient.shape)}")
    return coefficient.reshape(coefficient.shape + (1,) * (x.dim() - 1))


def _as_time(t: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``t`` as a floating tensor (on ``like``'s device and dtype when given)."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.get_default_dtype() if like is None else like.dtype,
                            device=None if like is None else like.device)
    elif like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    return t


class Interpolant:
    """A Gaussian path between noise (``t = 0``) and data (``t = 1``).

    Subclasses implement :meth:`coefficients`; everything else follows from it. An
    interpolant holds no learnable state and draws nothing at random, so one instance may
    serve many losses and samplers.
    """

    def coefficients(self, t: torch.Tensor) -> Coefficients:
        """Return ``(alpha, sigma, d_alpha, d_sigma)`` at times ``t``.

        Args:
            t: Times in ``[0, 1]``, a 0-d tensor or shape ``(B,)``.

        Returns:
            Four tensors shaped like ``t``: the data weight ``alpha(t)``, the noise weight
            ``sigma(t)`` and their time derivatives.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement coefficients(t)")

    def _coefficients_for(self, t: torch.Tensor | float, x: torch.Tensor) -> Coefficients:
        """Return the four coefficients at ``t``, each shaped to broadcast against ``x``."""
        t = _as_time(t, x)
        return tuple(expand_like(c, x) for c in self.coefficients(t))  # type: ignore[return-value]

    def sample(self, x0: torch.Tensor, x1: torch.Tensor,
               t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the point ``x_t`` on the path from ``x0`` to ``x1`` and its velocity ``u_t``.

        Args:
            x0: Noise, shape ``(B, *event_shape)``.
            x1: Data, the same shape as ``x0``.
            t: Times, a scalar or shape ``(B,)``.

        Returns:
            ``(x_t, u_t)``, both shaped like ``x0``.
        """
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} "
                             f"and {tuple(x1.shape)}")
        alpha, sigma, d_alpha, d_sigma = self._coefficients_for(t, x1)
        return alpha * x1 + sigma * x0, d_alpha * x1 + d_sigma * x0

    # -- conversions between what a field may predict -----------------------------------

    def velocity_to_noise(self, v: torch.Tensor, xt: torch.Tensor,
                          t: torch.Tensor | float) -> torch.Tensor:
        """Return the noise ``E[x0 | x_t]`` that the velocity ``v`` at ``(x_t, t)`` implies."""
        alpha, sigma, d_alpha, d_sigma = self._coefficients_for(t, xt)
        return (alpha * v - d_alpha * xt) / (alpha * d_sigma - d_alpha * sigma)

    def noise_to_velocity(self, eps: torch.Tensor, xt: torch.Tensor,
                          t: torch.Tensor | float) -> torch.Tensor:
        """Return the velocity that the predicted noise ``eps`` at ``(x_t, t)`` implies
        (singular where ``alpha(t) = 0``)."""
        alpha, sigma, d_alpha, d_sigma = self._coefficients_for(t, xt)
        return (d_alpha * xt + (alpha * d_sigma - d_alpha * sigma) * eps) / alpha

    def velocity_to_score(self, v: torch.Tensor, xt: torch.Tensor,
                          t: torch.Tensor | float) -> torch.Tensor:
        """Return the score ``grad log p_t(x_t)`` that the velocity ``v`` implies
        (singular where ``sigma(t) = 0``)."""
        sigma = self._coefficients_for(t, xt)[1]
        return -self.velocity_to_noise(v, xt, t) / sigma

    def score_to_velocity(self, s: torch.Tensor, xt: torch.Tensor,
                          t: torch.Tensor | float) -> torch.Tensor:
        """Return the velocity that the score ``s`` at ``(x_t, t)`` implies (singular where
        ``alpha(t) = 0``)."""
        sigma = self._coefficients_for(t, xt)[1]
        return self.noise_to_velocity(-sigma * s, xt, t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
