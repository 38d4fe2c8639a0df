"""Burn-in adaptation shared by the gradient samplers: per-chain dual averaging and Welford.

- :class:`DualAveraging` tunes one step size per chain toward a target acceptance
  probability (Hoffman & Gelman 2014, Algorithm 5), entirely with tensor operations.
- :class:`Welford` accumulates a batched running mean and (diagonal or dense) covariance of
  positions pooled over chains, for the mass matrix (Stan's regularised estimate).
- :func:`mass_windows` says at which burn-in iterations a mass estimate is taken: Stan's
  schedule (a fast window, slow windows of doubling length, a terminal fast window) or two
  windows over 15-90 % of burn-in.
- :func:`find_reasonable_step_size` is the Hoffman & Gelman starting step size, per chain,
  for any :class:`~ebmcore_samplers.metric.Metric` (identity, diagonal or dense mass).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ebmcore.validation import check_positive

if TYPE_CHECKING:
    from ebmcore.energy import Energy
    from ebmcore_samplers.metric import Metric


#: The fewest burn-in iterations left after the last mass window to re-tune the step size.
MIN_TERMINAL = 10

#: Stan's windowed adaptation (and BlackJAX's ``window_adaptation``): an initial fast window
#: that tunes only the step size, slow windows starting at ``BASE_WINDOW`` iterations and
#: doubling, each ending with a mass estimate, and a terminal fast window.
INIT_BUFFER, BASE_WINDOW, TERM_BUFFER = 75, 25, 50

#: Dual averaging's constants (Hoffman & Gelman 2014, as in Stan): shrinkage ``gamma``
#: toward ``mu``, iteration offset ``t0`` and the averaging weights' decay ``kappa``.
DUAL_GAMMA, DUAL_T0, DUAL_KAPPA = 0.05, 10.0, 0.75


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
                 n_chains: int | None = None, gamma: float = DUAL_GAMMA,
                 t0: float = DUAL_T0, kappa: float = DUAL_KAPPA,
                 dtype: torch.dtype = torch.float64,
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


def mass_windows(n_adapt: int, schedule: str = "fractions") -> list[tuple[int, int]]:
    """Return the ``[start, end)`` burn-in iterations of each mass-estimation window.

    ``schedule="stan"`` is Stan's, as BlackJAX's ``window_adaptation`` also follows it: the
    first ``INIT_BUFFER`` (75) iterations tune only the step size (the chains travel to the
    typical set); then windows of 25, 50, 100, ... iterations each end with a mass estimate
    from their own positions (the early, short ones give rough estimates that let the later
    ones mix faster), the last window stretched to end where the next would not fit; the
    last ``TERM_BUFFER`` (50) iterations re-tune the step size for the final mass. For 1,000
    iterations: 75-100, 100-150, 150-250, 250-450, 450-950. ``nuts``, ``hmc`` and ``mala``
    use it: on Neal's funnel it held NUTS's acceptance nearer its target with fewer
    divergences than the fractions below (``benchmarks/samplers_nuts.py --funnel``). A
    burn-in shorter than 150 iterations gets Stan's fallback: 15 % fast, one window, and the
    last 10 %, but at least ``MIN_TERMINAL`` iterations, to re-tune the step size.

    ``schedule="fractions"`` (the default, ``chees``'s): the first 15 % of burn-in tunes only
    the step size, then two windows (the second twice the first) estimate the mass, and the
    rest, the last 10 % but at least ``MIN_TERMINAL`` iterations, re-tunes the step size
    (ChEES's trajectory-length adaptation needs that longer terminal phase: after Stan's 50
    iterations its acceptance on a 10-D Gaussian ended at 0.79 against its target 0.651).

    Either way a short burn-in keeps at least ``MIN_TERMINAL`` terminal iterations (10 % of
    a short burn-in would leave a handful of steps: on a 2-D double well, 3 steps after 30
    of burn-in left MALA accepting 0.28 against its target 0.574), and burn-ins shorter
    than 20 iterations get no window.

    Raises:
        ValueError: When ``schedule`` is neither ``"stan"`` nor ``"fractions"``.
    """
    if schedule not in ("stan", "fractions"):
        raise ValueError(f"schedule must be 'stan' or 'fractions', got {schedule!r}")
    if n_adapt < 20:
        return []
    if schedule == "fractions":
        start = int(0.15 * n_adapt)
        end = min(int(0.9 * n_adapt), n_adapt - min(MIN_TERMINAL, n_adapt // 2))
        middle = start + (end - start) // 3
        return [(start, middle), (middle, end)]
    init, base, term = INIT_BUFFER, BASE_WINDOW, TERM_BUFFER
    if init + base + term > n_adapt:
        init = int(0.15 * n_adapt)
        term = max(int(0.1 * n_adapt), min(MIN_TERMINAL, n_adapt // 2))
        base = n_adapt - init - term
    end = n_adapt - term
    windows: list[tuple[int, int]] = []
    start, size = init, base
    while start < end:
        stop = start + size
        if stop + 2 * size > end:  # the next window would not fit: this one takes the rest
            stop = end
        windows.append((start, stop))
        start, size = stop, 2 * size
    return windows

def find_reasonable_step_size(energy: Energy, x: torch.Tensor, e: torch.Tensor,
                              g: torch.Tensor, step_size: torch.Tensor | float, metric: Metric,
                              generator: torch.Generator, *, target: float = 0.8,
                              max_iter: int = 100, with_count: bool = False
                              ) -> torch.Tensor | tuple[torch.Tensor, int]:
    """Per-chain step-size heuristic of Hoffman & Gelman (2014, Algorithm 4), as in Stan.

    From ``step_size``, each chain doubles (or halves) its step until the acceptance
    probability of one leapfrog step from a fresh momentum ``p ~ N(0, M)`` crosses
    ``target``. One leapfrog step is also exactly a (preconditioned) MALA proposal, so the
    result serves MALA as well as HMC, NUTS and ChEES.

    Args:
        energy: The energy ``E = -log p``.
        x: Chains ``(B, *event)``.
        e: Their energies ``(B,)``.
        g: Their energy gradients, shaped like ``x``.
        step_size: Starting step sizes ``(B,)`` or one positive number.
        metric: The mass matrix (:class:`~ebmcore_samplers.metric.Metric`).
        generator: Random generator for the momenta.
        target: The acceptance probability to cross, in ``(0, 1)``.
        max_iter: Most doublings or halvings.
        with_count: Also return the number of energy-and-gradient evaluations made (each one
            for all ``B`` chains).

    Returns:
        The step sizes ``(B,)`` in ``x``'s dtype, and with ``with_count`` the evaluations.

    Raises:
        RuntimeError: When a chain's step size leaves ``[1e-12, 1e7]`` (a flat or improper
            energy, or a gradient that is not finite) or does not settle in ``max_iter``.
    """
    if not 0.0 < float(target) < 1.0:
        raise ValueError(f"target must lie in (0, 1), got {target!r}")
    log_target = math.log(target)
    b = x.shape[0]
    xf, gf, e = x.detach().reshape(b, -1), g.detach().reshape(b, -1), e.detach()
    p = torch.empty_like(xf)
    evals = 0

    def log_accept(eps: torch.Tensor) -> torch.Tensor:
        nonlocal evals
        metric.draw_(p, generator)
        h0 = e + metric.kinetic(p)
        eb = eps[:, None]
        p1 = torch.addcmul(p, eb, gf, value=-0.5)
        x1 = torch.addcmul(xf, eb, metric.velocity(p1))
        e1, g1 = energy.energy_and_grad(x1.view(x.shape))
        evals += 1
        p1 = torch.addcmul(p1, eb, g1.detach().reshape(b, -1), value=-0.5)
        d = h0 - e1.detach() - metric.kinetic(p1)
        return torch.where(torch.isnan(d), -math.inf, d)

    if isinstance(step_size, torch.Tensor):
        eps = step_size.detach().to(dtype=x.dtype, device=x.device).expand(b).clone()
    else:
        eps = torch.full((b,), check_positive("step_size", step_size), dtype=x.dtype,
                         device=x.device)
    up = log_accept(eps) > log_target
    done = torch.zeros_like(up)
    for _ in range(max_iter):
        eps = torch.where(done, eps, torch.where(up, eps * 2.0, eps * 0.5))
        d = log_accept(eps)
        done = done | torch.where(up, ~(d > log_target), ~(d < log_target))
        out = ~done & ((eps > 1e7) | (eps < 1e-12))
        all_done, any_out = torch.stack([done.all(), out.any()]).tolist()
        if all_done:
            return (eps, evals) if with_count else eps
        if any_out:
            raise RuntimeError(
                f"step-size search left [1e-12, 1e7] for {int(out.sum())} chain(s); the "
                f"energy may be flat, improper or have a non-finite gradient. Pass step_size.")
    raise RuntimeError(f"step-size search did not settle in {max_iter} iterations; "
                       f"pass step_size explicitly")


def windowed_covariance(state: Any, x: torch.Tensor, iteration: int, n_adapt: int,
                        dense: bool, schedule: str = "fractions") -> torch.Tensor | None:
    """Feed burn-in positions into the mass estimate of the window ``iteration`` falls in.

    ``state.welford`` holds the window's :class:`Welford` (``None`` between windows). At a
    window's last iteration the estimate (Stan's regularised covariance) is returned and the
    accumulator dropped; otherwise ``None``. Every sampler that adapts a mass matrix calls
    this, so their windows cannot drift apart.

    Args:
        state: A sampler state with a ``welford`` attribute.
        x: The chains' positions after burn-in step ``iteration``.
        iteration: Burn-in step index, from 0.
        n_adapt: Number of burn-in steps.
        dense: Estimate the full covariance rather than its diagonal.
        schedule: The windows' schedule (:func:`mass_windows`).
    """
    for start, end in mass_windows(n_adapt, schedule):
        if not start <= iteration < end:
            continue
        if state.welford is None:
            state.welford = Welford(x[0].numel(), dense=dense, device=x.device)
        state.welford.update(x)
        if iteration != end - 1:
            return None
        cov = state.welford.covariance()
        state.welford = None
        return cov
    return None
