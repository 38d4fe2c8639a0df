"""Burn-in adaptation shared by the gradient samplers: per-chain dual averaging and Welford.

- :class:`DualAveraging` tunes one step size per chain toward a target acceptance
  probability (Hoffman & Gelman 2014, Algorithm 5), entirely with tensor operations.
- :class:`Welford` accumulates a batched running mean and (diagonal or dense) covariance of
  positions pooled over chains, for the mass matrix (Stan's regularised estimate).
- :func:`mass_windows` says at which burn-in iterations a mass estimate is taken.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ebmcore.validation import check_positive


class DualAveraging:
    """Per-chain dual averaging of ``log(step_size)`` toward ``target_accept``.

    Args:
        step_size: Initial step sizes ``(B,)`` (or a number, broadcast to ``n_chains``).
        target_accept: The acceptance probability to aim for, in ``(0, 1)``.
        n_chains: Number of chains when ``step_size`` is a number.
        gamma: Shrinkage toward ``mu = log(10 * step_size)``.
        t0: Iteration offset that damps the first updates.
        kappa: Decay exponent of the averaging weights.
        dtype: Floating dtype of the state (when ``step_size`` is a number).
        device: Device of the state (when ``step_size`` is a number).
    """

    def __init__(self, step_size: torch.Tensor | float, target_accept: float, *,
                 n_chains: int | None = None, gamma: float = 0.05, t0: float = 10.0,
                 kappa: float = 0.75, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        if not 0.0 < float(target_accept) < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
        self.target_accept = float(target_accept)
        self.gamma = check_positive("gamma", gamma)
        self.t0 = check_positive("t0", t0, allow_zero=True)
        self.kappa = check_positive("kappa", kappa)
        if not isinstance(step_size, torch.Tensor):
            if n_chains is None:
                raise ValueError("n_chains is required when step_size is a number")
            step_size = torch.full((n_chains,), check_positive("step_size", step_size),
                                   dtype=dtype, device=device)
        self.restart(step_size)

    def restart(self, step_size: torch.Tensor) -> None:
        """Start over from ``step_size`` (after a mass-matrix update, for instance)."""
        log_eps = step_size.detach().log()
        self.mu = log_eps + math.log(10.0)
        self.log_step = log_eps.clone()
        self.log_step_bar = torch.zeros_like(log_eps)
        self.h_bar = torch.zeros_like(log_eps)
        self.t = 0

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        """Feed one acceptance probability per chain; return the next step sizes ``(B,)``.

        Non-finite acceptance probabilities (divergent proposals) count as zero.
        """
        self.t += 1
        t = self.t
        alpha = torch.nan_to_num(accept_prob.detach().to(self.h_bar.dtype), nan=0.0,
                                 posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
        w = 1.0 / (t + self.t0)
        self.h_bar.mul_(1.0 - w).add_(self.target_accept - alpha, alpha=w)
        torch.sub(self.mu, self.h_bar, alpha=math.sqrt(t) / self.gamma, out=self.log_step)
        eta = t ** (-self.kappa)
        self.log_step_bar.mul_(1.0 - eta).add_(self.log_step, alpha=eta)
        return self.log_step.exp()

    def final(self) -> torch.Tensor:
        """Return the averaged step sizes ``(B,)`` to use after adaptation."""
        if self.t == 0:
            return self.log_step.exp()
        return self.log_step_bar.exp()

    def state_dict(self) -> dict[str, Any]:
        """Return the adaptation state."""
        return {"mu": self.mu, "log_step": self.log_step, "log_step_bar": self.log_step_bar,
                "h_bar": self.h_bar, "t": self.t, "target_accept": self.target_accept,
                "gamma": self.gamma, "t0": self.t0, "kappa": self.kappa}


class Welford:
    """Batched running mean and covariance of ``(B, D)`` rows, pooled over all rows.

    Uses Chan et al.'s parallel update, so adding a batch of ``B`` rows costs one pass.

    Args:
        dim: Row length ``D``.
        dense: Keep the full ``(D, D)`` covariance instead of its diagonal.
        dtype: Accumulator dtype (float64 keeps the sums accurate).
        device: Accumulator device.
    """

    def __init__(self, dim: int, *, dense: bool = False, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        self.dim = dim
        self.dense = dense
        self.dtype = dtype
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Forget every row seen."""
        self.n = 0
        self.mean = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        shape = (self.dim, self.dim) if self.dense else (self.dim,)
        self.m2 = torch.zeros(shape, dtype=self.dtype, device=self.device)

    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` (``(B, D)``, or ``(B, *event)`` flattened per row)."""
        x = x.detach().reshape(x.shape[0], -1).to(self.dtype)
        if x.shape[1] != self.dim:
            raise ValueError(f"Welford expects rows of length {self.dim}, got {x.shape[1]}")
        nb = x.shape[0]
        mean_b = x.mean(0)
        centred = x - mean_b
        m2_b = centred.T @ centred if self.dense else centred.square().sum(0)
        delta = mean_b - self.mean
        n = self.n + nb
        if self.dense:
            self.m2.add_(m2_b).add_(torch.outer(delta, delta), alpha=self.n * nb / n)
        else:
            self.m2.add_(m2_b).add_(delta.square(), alpha=self.n * nb / n)
        self.mean.add_(delta, alpha=nb / n)
        self.n = n

    def covariance(self, *, regularize: bool = True) -> torch.Tensor:
        """Return the sample variance ``(D,)`` (or covariance ``(D, D)`` when dense).

        With ``regularize``, shrink toward ``1e-3`` times the identity as Stan does:
        ``n / (n + 5) * cov + 1e-3 * 5 / (n + 5)``.
        """
        if self.n < 2:
            raise ValueError(f"Welford needs at least 2 rows for a covariance, got {self.n}")
        cov = self.m2 / (self.n - 1)
        if not regularize:
            return cov
        n = self.n
        shrink = 1e-3 * 5.0 / (n + 5.0)
        cov = cov * (n / (n + 5.0))
        if self.dense:
            return cov + shrink * torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
        return cov + shrink


def mass_windows(n_adapt: int) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` burn-in iterations of each mass-estimation window.

    The first 15 % of burn-in tunes only the step size (chains travel to the typical set),
    then two windows of doubling length estimate the mass (the first one a rough estimate
    that makes the second mix faster), and the last 10 % re-tunes the step size for the
    final mass. Burn-ins shorter than 20 iterations get no window.
    """
    if n_adapt < 20:
        return []
    start = int(0.15 * n_adapt)
    end = int(0.9 * n_adapt)
    middle = start + (end - start) // 3
    return [(start, middle), (middle, end)]
