"""The samplers' steps as pure tensor functions, for ``torch.compile`` to trace in blocks.

Each ``*_step(static, eg, carry, inputs, consts)`` returns ``(carry, accept_prob, divergent)``
(``None`` where the sampler reports none). ``eg(x) -> (energy, grad)``; ``carry`` starts with
``(x, energy, grad)``; ``inputs`` holds this step's slice of the block's per-step tensors;
``static`` is structure baked into the graph, ``consts`` tensors fixed for the run. No step
updates a tensor in place: the block is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Carry = tuple[torch.Tensor, ...]
#: ``step(static, eg, carry, inputs, consts) -> (carry, accept_prob | None, divergent | None)``
StepFn = Callable[..., tuple[Carry, "torch.Tensor | None", "torch.Tensor | None"]]


def _rows(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1)


def velocity(kind: str, p: torch.Tensor, inv: torch.Tensor | None) -> torch.Tensor:
    """``M⁻¹ p`` for momenta ``p`` ``(B, D)`` under a metric of ``kind``: ``"identity"``,
    ``"diag"`` (``inv`` the vector ``M⁻¹``) or ``"dense"`` (``inv`` the matrix)."""
    if kind == "identity":
        return p
    return p * inv if kind == "diag" else p @ inv


def _sq(v: torch.Tensor) -> torch.Tensor:
    """Per-chain squared norm ``(B,)``."""
    return _rows(v).square().sum(1)


def _drift_diffuse(x: torch.Tensor, g: torch.Tensor, eps: torch.Tensor, sd: torch.Tensor,
                   xi: torch.Tensor, tril: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(y, w)`` with ``y = x + L w`` and ``w = sd xi - eps Lᵀ g`` (rows ``(B, D)``).

    Langevin's move and MALA's proposal: ``x - eps M g + sd L xi`` for ``M = L Lᵀ``
    (``L = I`` when ``tril`` is None, ``diag(tril)`` when it is a vector). ``eps`` and
    ``sd`` are 0-d or per chain ``(B, 1)``.
    """
    w = sd * _rows(xi) - eps * _lt(g, tril)
    move = w if tril is None else (w * tril if tril.ndim == 1 else w @ tril.T)
    return x + move.view_as(x), w


def _lt(v: torch.Tensor, tril: torch.Tensor | None) -> torch.Tensor:
    """Rows of ``v`` times ``L`` (``Lᵀ v`` per row): ``L`` a matrix, a diagonal or ``I``."""
    if tril is None:
        return _rows(v)
    return _rows(v) * tril if tril.ndim == 1 else _rows(v) @ tril


def _metropolis(current: Carry, proposal: Carry, log_alpha: torch.Tensor,
                u: torch.Tensor) -> tuple[Carry, torch.Tensor]:
    """Accept ``proposal`` per chain with probability ``min(1, exp(log_alpha))`` (NaN: 0)."""
    accept_prob = log_alpha.clamp_max(0.0).exp().nan_to_num(nan=0.0)
    accepted = u < accept_prob
    carry = tuple(torch.where(accepted.view(-1, *[1] * (a.ndim - 1)), b, a)
                  for a, b in zip(current, proposal, strict=True))
    return carry, accept_prob


def langevin_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
                  inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
                  ) -> tuple[Carry, None, None]:
    """ULA as :meth:`ebmcore_samplers.langevin.Langevin.step` computes it.

    ``static = (clip?, min?, max?, precondition?)``, ``consts = (clip, min, max, L)``,
    ``inputs = (eps, noise_sd, xi)``.
    """
    has_clip, has_lo, has_hi, has_tril = static
    clip, lo, hi, tril = consts
    x, _, g = carry
    eps, sd, xi = inputs
    if has_clip:
        scale = (clip / _sq(g).sqrt().clamp_min(1e-30)).clamp_max(1.0)
        g = g * scale.view(-1, *[1] * (g.ndim - 1))
    y, _ = _drift_diffuse(x, g, eps, sd, xi, tril if has_tril else None)
    if has_lo or has_hi:
        y = y.clamp(lo if has_lo else None, hi if has_hi else None)
    e, g = eg(y)
    return (y, e, g), None, None


def mala_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
              inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
              ) -> tuple[Carry, torch.Tensor, torch.Tensor]:
    """MALA as :meth:`ebmcore_samplers.mala.MALA.step` computes it (``L⁻¹`` never formed).

    ``static = (precondition?,)``, ``consts = (L,)`` (a matrix, or a vector for a diagonal
    mass), ``inputs = (eps (B,), xi, u (B,))``.
    """
    (has_tril,) = static
    tril = consts[0] if has_tril else None
    x, e, g = carry
    eps, xi, u = inputs
    eps_r = eps.view(-1, 1)
    y, w = _drift_diffuse(x, g, eps_r, (2.0 * eps_r).sqrt(), xi, tril)
    e_y, g_y = eg(y)
    # The reverse move's residual L⁻¹ (x - y + eps M grad E(y)) is eps Lᵀ grad E(y) - w.
    rev = eps_r * _lt(g_y, tril) - w
    log_alpha = e - e_y + 0.5 * _sq(xi) - _sq(rev) / (4.0 * eps)
    new, accept_prob = _metropolis(carry, (y, e_y, g_y), log_alpha, u)
    return new, accept_prob, ~torch.isfinite(e_y)  # divergent: a non-finite proposal


def hmc_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
             inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
             ) -> tuple[Carry, torch.Tensor, torch.Tensor]:
    """One HMC trajectory as :meth:`ebmcore_samplers.hmc.HMC.step` computes it.

    ``static = (metric kind, n_leapfrog, divergence threshold)``, ``consts = (M⁻¹, M^½)``
    (``None`` for the identity), ``inputs = (eps (B,) jittered, xi (B, D), u (B,))``.
    """
    kind, n_leapfrog, threshold = static
    inv, sqrt = consts
    x, e, g = carry
    eps, xi, u = inputs
    eps_r = eps.view(-1, 1)
    p = xi if kind == "identity" else (xi * sqrt if kind == "diag" else xi @ sqrt)
    h0 = 0.5 * (p * velocity(kind, p, inv)).sum(1) + e
    # Leapfrog with the two half kicks between full steps merged into one full kick.
    p = p - 0.5 * eps_r * _rows(g)
    x1, e1, g1 = x, e, g
    for i in range(n_leapfrog):
        x1 = x1 + (eps_r * velocity(kind, p, inv)).view_as(x)
        e1, g1 = eg(x1)
        p = p - (eps_r if i < n_leapfrog - 1 else 0.5 * eps_r) * _rows(g1)
    energy_error = 0.5 * (p * velocity(kind, p, inv)).sum(1) + e1 - h0
    divergent = ~(energy_error <= threshold)  # NaN counts as divergent
    new, accept_prob = _metropolis(carry, (x1, e1, g1), -energy_error, u)
    return new, accept_prob, divergent


def underdamped_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
                     inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
                     ) -> tuple[Carry, None, None]:
    """One BAOAB step as :meth:`ebmcore_samplers.underdamped.UnderdampedLangevin.step`.

    ``carry = (x, E, grad, p)``, ``inputs = (h/2, h/(2m), c, sqrt((1 - c²) m), xi)``.
    """
    x, _, g, p = carry
    half_h, half_h_m, c, sd, xi = inputs
    p = p - half_h * g            # B
    x = x + half_h_m * p          # A
    p = c * p + sd * xi           # O
    x = x + half_h_m * p          # A
    e, g = eg(x)
    p = p - half_h * g            # B
    return (x, e, g, p), None, None


def meads_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
               inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
               ) -> tuple[Carry, torch.Tensor, torch.Tensor]:
    """One generalized-HMC step as :meth:`ebmcore_samplers.meads.MEADS.step` computes it,
    with each chain's fold parameters fixed (after burn-in).

    ``static = (divergence threshold,)``, ``carry = (x, E, grad, r (B, D), u (B,))``,
    ``inputs = (eps (B, 1), alpha (B, 1), sigma (B, D), delta (B,), xi (B, D))``.
    """
    (threshold,) = static
    x, e, g, r, s = carry
    eps, alpha, sigma, delta, xi = inputs
    r = r * (1.0 - alpha).sqrt() + xi * alpha.sqrt()
    u = (s + 1.0 + delta).remainder(2.0) - 1.0
    h0 = 0.5 * (r * r).sum(1) + e
    scale = eps * sigma
    r1 = r - 0.5 * scale * _rows(g)
    x1 = x + (scale * r1).view_as(x)
    e1, g1 = eg(x1)
    r1 = r1 - 0.5 * scale * _rows(g1)
    energy_error = 0.5 * (r1 * r1).sum(1) + e1 - h0
    log_ratio = torch.where(torch.isnan(energy_error), -torch.inf, -energy_error)
    divergent = ~(energy_error <= threshold)
    accepted = (u.abs().log() <= log_ratio) & ~divergent
    # Accepted: u <- u p(x) / p(x'), uniform again given the new state (Neal 2020).
    s = torch.where(accepted, u * torch.exp(-log_ratio.where(accepted, 0.0)), u)
    acc_x = accepted.view(-1, *[1] * (x.ndim - 1))
    x = torch.where(acc_x, x1, x)
    g = torch.where(acc_x, g1, g)
    e = torch.where(accepted, e1, e)
    r = torch.where(accepted[:, None], r1, -r)
    return (x, e, g, r, s), log_ratio.clamp(max=0.0).exp(), divergent


def tempering_step(static: tuple[Any, ...], eg: Callable, carry: Carry,
                   inputs: tuple[torch.Tensor, ...], consts: tuple[Any, ...]
                   ) -> tuple[Carry, torch.Tensor | None, torch.Tensor | None]:
    """Parallel tempering's step: the base step on every replica, then maybe a swap round.

    As :meth:`ebmcore_samplers.tempering.ParallelTempering.step` computes it.

    Rows are chain-major: row ``b * R + r`` holds chain ``b`` at temperature ``r``, so a
    chunk of whole chains swaps within itself. ``static = (base step, base static, R)``,
    ``consts = (beta (R,), *base consts)``, ``carry = (*base carry, swap probability sums,
    swap attempts)`` (row ``b * R + p`` tallies pair ``(p, p + 1)`` of chain ``b``),
    ``inputs = (swap?, parity, u (B R,), *base inputs, counted)``: ``u`` at row
    ``b * R + p`` is the uniform of pair ``p``, and the last input weights the tallies.
    """
    base_step, base_static, r = static
    beta, base_consts = consts[0], consts[1:]
    swap, parity, u = inputs[:3]
    base_inputs, counted = inputs[3:-1], inputs[-1]

    def tempered(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, g = eg(z)
        rows = beta.repeat(z.shape[0] // r)
        return e * rows, g * rows.view(-1, *[1] * (g.ndim - 1))

    new, accept_prob, divergent = base_step(base_static, tempered, carry[:-2], base_inputs,
                                            base_consts)
    x, e, g = new[:3]
    c = x.shape[0] // r
    raw = e.view(c, r) / beta
    slot = torch.arange(r, device=x.device)
    # Pair (p, p + 1) is tried in this round: p of the round's parity, on a swap step.
    tried = (slot < r - 1) & (slot % 2 == parity) & (swap > 0)
    log_a = (beta - beta.roll(-1)) * (raw - raw.roll(-1, dims=1))  # column R-1: unused
    up = tried & (u.view(c, r).log() < log_a)  # slot p takes slot p + 1's position
    down = up.roll(1, dims=1)  # slot p + 1 takes slot p's (column 0 gets the unused R - 1)
    moved = up | down

    def exchange(t: torch.Tensor) -> torch.Tensor:
        """Apply the round's swaps to ``t`` of shape ``(c, r, ...)``."""
        shape = (c, r, *[1] * (t.ndim - 2))
        return torch.where(up.view(shape), t.roll(-1, dims=1),
                           torch.where(down.view(shape), t.roll(1, dims=1), t))

    # Positions move with their untempered energy and gradient, re-tempered at the new slot.
    x = exchange(x.reshape(c, r, *x.shape[1:])).view_as(x)
    e = torch.where(moved, exchange(raw) * beta, e.view(c, r)).view(-1)
    beta_g = beta.view(1, r, *[1] * (g.ndim - 1))
    g_rows = g.reshape(c, r, *g.shape[1:])
    g = torch.where(moved.view(c, r, *[1] * (g.ndim - 1)),
                    exchange(g_rows / beta_g) * beta_g, g_rows).view_as(g)
    prob = torch.where(tried, log_a.clamp(max=0.0).exp(), torch.zeros_like(log_a))
    sums = carry[-2] + counted * prob.view(-1)
    attempts = carry[-1] + counted * tried.to(x.dtype).expand(c, r).reshape(-1)
    return (x, e, g, *new[3:], sums, attempts), accept_prob, divergent
