"""MEADS: generalized HMC whose step size, damping and scales are set across folds of chains.

Hoffman & Sountsov (2022), "Tuning-Free Generalized Hamiltonian Monte Carlo" (AISTATS),
Algorithm 3. Each iteration every chain takes one generalized-HMC step: its (whitened)
momentum is partly refreshed, ``r <- sqrt(1 - alpha) r + sqrt(alpha) xi``; one leapfrog step
of size ``eps`` with inverse mass ``diag(sigma^2)`` is proposed and accepted by Neal's (2020)
non-reversible slice variable ``u`` (which drifts by ``delta`` each step); a rejection flips
the momentum. Momentum persistence makes the chains move like long HMC trajectories with one
gradient per step, and every chain does the same work.

The chains are split into ``n_folds`` folds. During burn-in, after iteration ``t`` the
parameters of fold ``(t + 1) mod K`` are recomputed from the positions and gradients of fold
``t mod K`` (never from its own chains, so a fold's kernel does not depend on its state):

- ``sigma``: the per-coordinate standard deviation of the source fold's positions;
- ``eps = min(step_size_multiplier / sqrt(lambda_max(sigma * grad)), 1)``, ``lambda_max``
  the largest eigenvalue of the scaled gradients' second moment (:func:`max_eigenvalue`),
  which bounds the (whitened) Hessian's largest eigenvalue;
- damping ``gamma = max(1 / sqrt(lambda_max(standardised positions)),
  damping_slowdown / ((t + 1) eps))``, then ``alpha = 1 - exp(-2 eps gamma)`` and
  ``delta = alpha / 2``.

Every ``K`` iterations the chains are reshuffled over the folds. After burn-in each fold keeps
its parameters, so ``backend="compiled"`` runs the burn-in eagerly and the kept steps as
compiled blocks (:func:`ebmcore_samplers.compiled.steps.meads_step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_int, check_positive
from ebmcore_samplers import _common
from ebmcore_samplers.compiled.backend import CompiledPlan, Draws
from ebmcore_samplers.compiled.loop import CompiledSampler
from ebmcore_samplers.compiled.steps import meads_step
from ebmcore_samplers.hmc import DIVERGENCE_THRESHOLD


def max_eigenvalue(rows: torch.Tensor) -> torch.Tensor:
    """Estimate the largest eigenvalue of ``E[x x^T]`` from rows ``x`` ``(n, D)``, ``n >= 2``.

    ``tr(C^2) / tr(C)`` with unbiased estimates of both traces from the rows' Gram matrix
    (Hoffman & Sountsov 2022): it lies between the mean and the largest eigenvalue, close to
    the largest when one dominates, in ``O(n^2 D)`` without forming ``C``.
    """
    n = rows.shape[0]
    if n < 2:
        raise ValueError(f"max_eigenvalue needs at least 2 rows, got {n}")
    gram = rows @ rows.T
    diag = gram.diagonal()
    trace = diag.sum() / n
    trace_sq = (gram.square().sum() - diag.square().sum()) / (n * (n - 1))
    return trace_sq / trace


@dataclass
class MEADSState(SamplerState):
    """State of :class:`MEADS` chains.

    Attributes:
        t: Iterations run since :meth:`MEADS.init`.
        momentum: Persistent whitened momenta ``r`` ``(B, D)`` (``r ~ N(0, I)``).
        slice: Non-reversible slice variables ``u`` ``(B,)`` in ``[-1, 1]``.
        fold: Each chain's fold ``(B,)`` (long).
        step_size, alpha, delta: Per-fold parameters ``(K,)``.
        sigma: Per-fold scales ``(K, D)``.
        shuffle: Reshuffle the folds before the next step.
        position: Buffer for the proposals.
    """

    t: int = 0
    momentum: torch.Tensor | None = None
    slice: torch.Tensor | None = None
    fold: torch.Tensor | None = None
    step_size: torch.Tensor | None = None
    alpha: torch.Tensor | None = None
    delta: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    shuffle: bool = False
    position: torch.Tensor | None = None


class MEADS(CompiledSampler, Sampler):
    """MEADS: generalized HMC tuned across folds of chains (Hoffman & Sountsov 2022).

    No step size, trajectory length or mass to set: all come from the chains (see the module
    docstring). One gradient per chain per step. Needs ``n_folds`` folds of at least 2
    chains each (``B`` a multiple of ``n_folds``), started dispersed: the scales are the
    chains' spread.

    Per-step info: ``accept_prob`` (``min(1, exp(-energy_error))``), ``accepted`` (by the
    slice variable), ``divergent``, ``n_grad`` (1) and ``step_size``. Final diagnostics:
    ``step_size`` ``(B,)``, ``inverse_mass`` (the folds' mean ``sigma^2``, ``(D,)``),
    ``damping`` (each chain's ``alpha``) and ``fold_inverse_mass`` ``(K, D)``.

    Args:
        n_folds: Folds ``K`` the chains are split into.
        step_size_multiplier: ``eps`` is this over ``sqrt(lambda_max)`` (0.5 in the paper).
        damping_slowdown: Floor of the damping early in burn-in, ``damping_slowdown / (t
            eps)`` (1 in the paper).
    """

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def __init__(self, n_folds: int = 4, step_size_multiplier: float = 0.5,
                 damping_slowdown: float = 1.0) -> None:
        self.n_folds = check_int("n_folds", n_folds, minimum=1)
        self.step_size_multiplier = check_positive("step_size_multiplier",
                                                   step_size_multiplier)
        self.damping_slowdown = check_positive("damping_slowdown", damping_slowdown)

    def _parameters(self, x: torch.Tensor, g: torch.Tensor, t: int
                    ) -> tuple[float, torch.Tensor, float]:
        """``(eps, sigma, alpha)`` from chains ``x`` and their gradients ``g`` ``(n, D)``."""
        x, g = x.double(), g.double()
        sigma = x.std(0, correction=0)
        if not bool((sigma > 0).all()) or not bool(torch.isfinite(sigma).all()):
            raise ValueError("meads sets its scales from the spread of the chains, and some "
                             "coordinate has none (or is not finite); start the chains "
                             "dispersed, at distinct points")
        curvature = float(max_eigenvalue(g * sigma))
        if not curvature > 0.0 or not math.isfinite(curvature):
            raise ValueError(f"meads sets its step size from the chains' gradients, whose "
                             f"scaled second moment is {curvature!r}; the energy must have "
                             f"finite, not all zero gradients at the chains")
        eps = min(self.step_size_multiplier / math.sqrt(curvature), 1.0)
        standard = (x - x.mean(0)) / sigma
        gamma = max(1.0 / math.sqrt(float(max_eigenvalue(standard))),
                    self.damping_slowdown / ((t + 1) * eps))
        return eps, sigma, 1.0 - math.exp(-2.0 * eps * gamma)

    def init(self, energy: Energy, x: torch.Tensor) -> MEADSState:
        """Return chains at a copy of ``x``, every fold's parameters set from all chains.

        Raises:
            ValueError: When the chains cannot fill ``n_folds`` folds of 2 or more equally,
                or some coordinate has no spread across chains.
        """
        if isinstance(x, torch.Tensor) and x.ndim >= 2:
            b = x.shape[0]
            if b % self.n_folds or b // self.n_folds < 2:
                raise ValueError(f"meads splits the chains into n_folds={self.n_folds} equal "
                                 f"folds of at least 2 chains; got x with {b} chains")
        x, e, g = _common.initial_energy_and_grad(energy, x)
        b, d, k = x.shape[0], x[0].numel(), self.n_folds
        eps, sigma, alpha = self._parameters(x.view(b, -1), g.view(b, -1), 0)
        like = {"dtype": x.dtype, "device": x.device}
        state = MEADSState(  # momenta and slices are drawn at the first step
            x=x, energy=e.clone(), grad=g.clone(),
            momentum=torch.empty((b, d), **like), slice=torch.empty(b, **like),
            fold=torch.arange(b, device=x.device) % k,
            step_size=torch.full((k,), eps, **like), alpha=torch.full((k,), alpha, **like),
            delta=torch.full((k,), 0.5 * alpha, **like),
            sigma=sigma.to(**like).expand(k, d).clone(),
            position=torch.empty_like(x))
        return state

    def step(self, energy: Energy, state: MEADSState,
             generator: torch.Generator | None = None
             ) -> tuple[MEADSState, dict[str, torch.Tensor]]:
        """One generalized-HMC step for every chain (one gradient each)."""
        gen = _common.generator_for(generator, state.x)
        x = state.x
        b = x.shape[0]
        if state.shuffle:
            perm = torch.randperm(b, generator=gen, device=gen.device).to(x.device)
            state.fold = state.fold[perm]
            state.shuffle = False
        if state.t == 0:  # stationary momenta and slices to start from
            _common.randn_(state.momentum, gen)
            _common.rand_(state.slice, gen).mul_(2.0).sub_(1.0)
        f = state.fold
        eps, alpha = state.step_size[f][:, None], state.alpha[f][:, None]
        sigma = state.sigma[f]
        r = state.momentum
        noise = _common.randn_(torch.empty_like(r), gen)
        r.mul_((1.0 - alpha).sqrt()).add_(noise.mul_(alpha.sqrt()))
        u = state.slice.add_(1.0 + state.delta[f]).remainder_(2.0).sub_(1.0)
        h0 = 0.5 * torch.linalg.vecdot(r, r) + state.energy
        x1 = state.position.copy_(x)
        xf = x1.view(b, -1)
        r1 = r - 0.5 * eps * sigma * state.grad.view(b, -1)
        xf.addcmul_(eps * sigma, r1)
        e1, g1 = energy.energy_and_grad(x1)
        e1, g1 = e1.detach(), g1.detach()
        r1.sub_(0.5 * eps * sigma * g1.reshape(b, -1))
        energy_error = 0.5 * torch.linalg.vecdot(r1, r1) + e1 - h0
        log_ratio = torch.where(torch.isnan(energy_error), -math.inf, -energy_error)
        accepted = u.abs().log() <= log_ratio
        divergent = ~(energy_error <= DIVERGENCE_THRESHOLD)
        accepted &= ~divergent
        # Accepted: u <- u p(x) / p(x'), uniform again given the new state (Neal 2020).
        state.slice = torch.where(accepted, u * torch.exp(-log_ratio.where(accepted, 0.0)), u)
        acc_b = _common.per_chain(accepted, x.ndim)
        torch.where(acc_b, x1, x, out=x)
        torch.where(acc_b, g1.reshape(x.shape), state.grad, out=state.grad)
        torch.where(accepted, e1, state.energy, out=state.energy)
        torch.where(accepted[:, None], r1, r.neg(), out=r)
        state.t += 1
        accept_prob = log_ratio.clamp(max=0.0).exp()
        return state, {"accept_prob": accept_prob, "accepted": accepted,
                       "divergent": divergent, "energy_error": energy_error,
                       "n_grad": torch.ones(b, dtype=torch.long, device=x.device),
                       "step_size": eps.view(b)}

    def adapt(self, state: MEADSState, info: dict[str, torch.Tensor], iteration: int,
              n_adapt: int) -> MEADSState:
        """Set the next fold's parameters from this fold's chains; reshuffle every K steps."""
        k = self.n_folds
        source, target = iteration % k, (iteration + 1) % k
        rows = state.fold == source
        b = state.x.shape[0]
        eps, sigma, alpha = self._parameters(state.x.view(b, -1)[rows],
                                             state.grad.view(b, -1)[rows], iteration)
        state.step_size[target] = eps
        state.sigma[target] = sigma.to(state.sigma.dtype)
        state.alpha[target] = alpha
        state.delta[target] = 0.5 * alpha
        state.shuffle = iteration % k == k - 1 and iteration < n_adapt - 1
        return state

    def _compiled_adapts(self) -> bool:
        """Burn-in sets the folds' parameters step by step: it runs eagerly."""
        return True

    def _compiled_plan(self, energy: Energy, state: MEADSState, draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.steps.meads_step`,
        each chain's fold parameters passed per step (they split with the chains)."""
        x = state.x
        b, d = x.shape[0], x[0].numel()
        if state.t == 0:  # as the eager first step: stationary momenta and slices
            state.momentum = draws.normal(b, d, tag="momentum").clone()
            state.slice = draws.uniform(b, tag="slice").clone().mul_(2.0).sub_(1.0)
            state.t = 1
        f = state.fold
        per_chain = (state.step_size[f][:, None], state.alpha[f][:, None], state.sigma[f],
                     state.delta[f])

        def inputs(t0: int, k: int, dr: Draws) -> tuple[torch.Tensor, ...]:
            fixed = tuple(v.expand(k, *v.shape) for v in per_chain)
            return (*fixed, dr.normal(k, b, d))

        return CompiledPlan(meads_step, static=(DIVERGENCE_THRESHOLD,), consts=(),
                            inputs=inputs, extra=("momentum", "slice"), acceptance=True,
                            divergence=True)

    def final_diagnostics(self, state: MEADSState) -> dict[str, Any]:
        """Report per-chain step sizes and damping, and the scales (see the class)."""
        f = state.fold
        inverse = state.sigma.square()
        return {"step_size": state.step_size[f].clone(), "damping": state.alpha[f].clone(),
                "inverse_mass": inverse.mean(0), "fold_inverse_mass": inverse.clone()}

    def state_dict(self) -> dict[str, Any]:
        """Return the constructor's settings."""
        return {"n_folds": self.n_folds, "step_size_multiplier": self.step_size_multiplier,
                "damping_slowdown": self.damping_slowdown}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings saved by :meth:`state_dict` (validated as in the constructor)."""
        self.__init__(**state)  # type: ignore[misc]
