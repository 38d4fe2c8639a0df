"""Metropolis-adjusted Langevin algorithm (MALA) with a mass matrix and burn-in adaptation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler
from ebmcore_samplers import _common
from ebmcore_samplers._adaptive import AdaptiveSampler, AdaptiveState, check_adaptable
from ebmcore_samplers.compiled import CompiledPlan, CompiledSampler, Draws, mala_step
from ebmcore_samplers.schedules import Schedule

__all__ = ["MALA", "MALAState", "check_adaptable"]


@dataclass
class MALAState(AdaptiveState):
    """State of :class:`MALA` chains (see :class:`~ebmcore_samplers._adaptive.AdaptiveState`).

    Attributes:
        proposal: Buffer for the proposed positions.
        noise: Buffer for the Gaussian noise.
        scale_tril: The proposal's noise factor ``L`` (``L Lᵀ`` is the preconditioner
            ``M``): the energy's ``preconditioner()`` (``(D, D)``) with ``precondition``,
            else the factor of the inverse mass (a vector ``(D,)`` for a diagonal mass, a
            lower-triangular ``(D, D)`` for a dense one), or ``None`` for the identity.
    """

    proposal: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    scale_tril: torch.Tensor | None = None


#: ``adapt_mass``'s default: ``"diag"``, or ``None`` with ``precondition=True``.
_DEFAULT = "default"


class MALA(AdaptiveSampler, CompiledSampler, Sampler):
    """Metropolis-adjusted Langevin algorithm, with a mass matrix (preconditioned MALA).

    Proposes ``y = x - eps * M⁻¹ grad E(x) + sqrt(2 eps) * M^-½ xi`` and accepts it per chain
    with the Metropolis-Hastings probability, whose proposal density is
    ``-log q(y | x) = |L⁻¹ (y - x + eps M⁻¹ grad E(x))|² / (4 eps)`` for ``L Lᵀ = M⁻¹``, so
    the stationary law is exact. ``eps`` is the Langevin time step: one MALA step is one
    leapfrog step of HMC with step ``sqrt(2 eps)`` and the same mass ``M``, and
    ``eps = h² / 2`` in the notation ``y = x + h²/2 M⁻¹ grad log p + h M^-½ xi``. Each step
    costs one energy-and-gradient evaluation (info ``n_grad``): the energy and gradient at
    the current point are cached and reused when a proposal is rejected.

    During burn-in ``adapt_step_size`` tunes each chain's step size by dual averaging and
    ``adapt_mass`` estimates the inverse mass ``M⁻¹`` from the positions pooled over chains
    (diagonal or dense), as :class:`~ebmcore_samplers.hmc.HMC` does; afterwards both stay
    fixed (reported as ``diagnostics["step_size"]`` and ``["inverse_mass"]``). With
    ``step_size=None`` the first step finds each chain's step size by the Hoffman & Gelman
    heuristic (on the equivalent leapfrog step).

    With ``precondition`` the preconditioner is the energy's instead of a mass:
    ``M⁻¹ = L Lᵀ`` for ``L = energy.preconditioner()`` (a ``(D, D)`` factor for ``D``
    coordinates; a model with a Gaussian base gives its data covariance). Why: on an
    ill-conditioned target one step size cannot suit every direction. Images are the
    typical case: pixel variances span orders of magnitude, so the step that the narrowest
    direction accepts leaves the wide ones frozen. With ``M⁻¹`` close to the target's
    covariance every direction moves at its own scale and ``eps`` of order one is accepted.
    The ratio is computed from ``Lᵀ`` products, without inverting ``L``; preconditioned
    chains, and chains with a mass, run on the torch and compiled backends only.

    Args:
        step_size: ``eps``, a positive number (the initial value when adapting), a schedule
            (only with ``adapt_step_size=False``), or ``None`` (default): found at the first
            step, then adapted during burn-in.
        adapt_step_size: Tune the per-chain step size during burn-in.
        target_accept: Acceptance probability the adaptation aims for (0.574 is optimal
            for MALA in high dimension).
        precondition: Precondition by the energy's ``preconditioner()`` (torch and
            compiled backends); excludes ``mass`` and ``adapt_mass``.
        mass: ``None`` (identity), a vector ``(D,)`` of diagonal masses or a symmetric
            positive-definite matrix ``(D, D)``.
        adapt_mass: ``"diag"``, ``"dense"`` or ``None``: estimate the inverse mass during
            burn-in. Default ``"diag"`` (``None`` with ``precondition=True``).
        jitter: Draw each step's step size uniformly from
            ``step_size * [1 - jitter, 1 + jitter]`` per chain (``0 <= jitter < 1``).
    """

    acceptance_key = "accept_prob"
    divergence_key = "divergent"
    grads_per_step = 1

    def __init__(self, step_size: float | Schedule | None = None, adapt_step_size: bool = True,
                 target_accept: float = 0.574, precondition: bool = False, mass: Any = None,
                 adapt_mass: str | None = _DEFAULT, jitter: float = 0.0) -> None:
        self.precondition = _common.check_flag("precondition", precondition)
        if adapt_mass == _DEFAULT:
            adapt_mass = None if self.precondition else "diag"
        elif self.precondition and adapt_mass not in (None, False):
            raise ValueError("adapt_mass cannot be used with precondition=True (the energy's "
                             "preconditioner is the mass); pass adapt_mass=None")
        if self.precondition and mass is not None:
            raise ValueError("mass cannot be used with precondition=True (the energy's "
                             "preconditioner is the mass); pass one or the other")
        if self.precondition and step_size is None:
            raise ValueError("precondition=True needs a step_size (the step-size search "
                             "runs with a mass, not an energy's preconditioner)")
        self._set_adaptive(step_size, adapt_step_size, target_accept, mass, adapt_mass,
                           jitter)

    def _from_leapfrog(self, eps: torch.Tensor) -> torch.Tensor:
        """MALA's ``eps`` for a leapfrog step ``h``: ``h² / 2``."""
        return eps.square().mul_(0.5)

    def _on_metric(self, state: AdaptiveState) -> None:
        """The noise factor follows the new inverse mass."""
        state.scale_tril = state.metric.inverse_factor()

    def init(self, energy: Energy, x: torch.Tensor) -> MALAState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        scale_tril = _common.preconditioner(energy, x) if self.precondition else None
        x, e, g = _common.initial_energy_and_grad(energy, x)
        state = MALAState(x=x, energy=e.clone(), grad=g.clone(), proposal=torch.empty_like(x),
                          noise=torch.empty_like(x), **self._adaptive_fields(x, 1))
        state.scale_tril = (scale_tril if self.precondition
                            else state.metric.inverse_factor())
        return state

    def step(self, energy: Energy, state: MALAState,
             generator: torch.Generator | None = None
             ) -> tuple[MALAState, dict[str, torch.Tensor]]:
        """Propose, then accept or reject per chain; info has ``accept_prob``, ``accepted``,
        ``divergent`` (a non-finite proposal energy) and ``n_grad``."""
        gen = _common.generator_for(generator, state.x)
        searched = self._ensure_step_size(energy, state, gen)
        x, g, y, xi = state.x, state.grad, state.proposal, state.noise
        eps = self._step_sizes(state, gen)
        if isinstance(eps, torch.Tensor):
            eps_b: float | torch.Tensor = _common.per_chain(eps, x.ndim)
            sd: float | torch.Tensor = _common.per_chain((2.0 * eps).sqrt(), x.ndim)
        else:
            eps_b, sd = eps, (2.0 * eps) ** 0.5
        if state.scale_tril is not None:
            e_y, g_y, forward, backward = self._propose_preconditioned(
                energy, state, gen, eps, eps_b, sd)
        else:
            # y = x - eps * g + sqrt(2 eps) * xi
            if isinstance(eps_b, torch.Tensor):
                torch.addcmul(x, g, eps_b, value=-1.0, out=y)
            else:
                torch.add(x, g, alpha=-eps_b, out=y)
            _common.randn_(xi, gen)
            forward = _common.sq_norm(xi).mul_(0.5)  # -log q(y|x) up to the shared constant
            _common.axpy_(y, sd, xi)
            e_y, g_y = energy.energy_and_grad(y)
            # Reverse move x <- y: residual r = x - y + eps * grad E(y), in the noise buffer.
            r = torch.sub(x, y, out=xi)
            _common.axpy_(r, eps_b, g_y)
            backward = _common.sq_norm(r).div_(4.0 * eps)
        log_alpha = (state.energy - e_y).add_(forward).sub_(backward)
        divergent = ~torch.isfinite(e_y)
        accept_prob = log_alpha.clamp_max_(0.0).exp_().nan_to_num_(nan=0.0)
        accepted = _common.rand_(state.uniform, gen) < accept_prob
        acc_b = _common.per_chain(accepted, x.ndim)
        torch.where(acc_b, y, x, out=x)
        torch.where(acc_b, g_y, g, out=g)
        torch.where(accepted, e_y, state.energy, out=state.energy)
        state.t += 1
        return state, {"accept_prob": accept_prob, "accepted": accepted,
                       "divergent": divergent, "n_grad": self._n_grad_info(state, searched)}

    @staticmethod
    def _propose_preconditioned(energy: Energy, state: MALAState, gen: torch.Generator,
                                eps: float | torch.Tensor, eps_b: float | torch.Tensor,
                                sd: float | torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
        """Write ``y = x - eps M⁻¹ g + sqrt(2 eps) L xi`` into ``state.proposal``.

        ``L`` is ``state.scale_tril``: a vector (diagonal factor) or a ``(D, D)`` matrix.
        Returns ``(E(y), grad E(y), -log q(y|x), -log q(x|y))``, the last two up to the
        constant they share. With ``u(z) = Lᵀ grad E(z)`` and ``w = sqrt(2 eps) xi - eps u(x)``
        the proposal is ``y = x + L w``, and the reverse residual is
        ``L⁻¹ (x - y + eps M⁻¹ grad E(y)) = eps u(y) - w`` exactly, so neither direction
        inverts ``L``.
        """
        x, g, y, xi, tril = state.x, state.grad, state.proposal, state.noise, state.scale_tril
        n = x.shape[0]
        # Rows of the flattened batch: per-chain values broadcast as (B, 1).
        eps_f = eps_b.view(n, 1) if isinstance(eps_b, torch.Tensor) else eps_b
        sd_f = sd.view(n, 1) if isinstance(sd, torch.Tensor) else sd
        xi_f = _common.randn_(xi, gen).view(n, -1)
        forward = _common.sq_norm(xi_f).mul_(0.5)
        diag = tril.ndim == 1
        g_f = g.reshape(n, -1)
        w = (g_f * tril if diag else g_f @ tril).mul_(eps_f).neg_()
        _common.axpy_(w, sd_f, xi_f)  # w = sqrt(2 eps) xi - eps Lᵀ g(x)
        if diag:
            torch.addcmul(x.view(n, -1), w, tril, out=y.view(n, -1))
        else:
            torch.addmm(x.view(n, -1), w, tril.T, out=y.view(n, -1))
        e_y, g_y = energy.energy_and_grad(y)
        # xi is spent: hold eps Lᵀ g(y) - w, that is L⁻¹ r, in its buffer.
        gy_f = g_y.reshape(n, -1)
        rev = (torch.mul(gy_f, tril, out=xi_f) if diag
               else torch.matmul(gy_f, tril, out=xi_f)).mul_(eps_f).sub_(w)
        backward = _common.sq_norm(rev).div_(4.0 * eps)
        return e_y, g_y, forward, backward

    def _compiled_plan(self, energy: Energy, state: MALAState, draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.mala_step`."""
        self._ensure_step_size(energy, state, draws.generator)
        x = state.x
        b = x.shape[0]

        def inputs(t0: int, k: int, d: Draws) -> tuple[torch.Tensor, ...]:
            eps = self._compiled_step_sizes(state, t0, k, d)
            return eps, d.normal(k, *x.shape), d.uniform(k, b)

        return CompiledPlan(mala_step, static=(state.scale_tril is not None,),
                            consts=(state.scale_tril,), inputs=inputs, acceptance=True,
                            divergence=True)

    def fused_refusal(self) -> str | None:
        """Why not fused: a preconditioner, a mass, jitter or ``step_size=None`` (the
        kernels have no metric and no search); mass adaptation is refused by
        ``params_reason`` when a burn-in would run it."""
        refusal = _common.preconditioned_refusal(self) or self._adaptive_refusal("mala")
        if refusal is None and self.mass is not None:
            refusal = "the fused MALA kernels have no mass matrix; pass mass=None"
        if refusal is None and self.jitter > 0:
            refusal = "the fused MALA kernels have no step-size jitter; pass jitter=0"
        return refusal

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """The fused kernels' settings (see ``kernels.dispatch.run_fused``)."""
        return "mala", {"step_size": self.step_size, "adapt_step_size": self.adapt_step_size,
                        "target_accept": self.target_accept, "adapt_mass": self.adapt_mass}

    def state_dict(self) -> dict[str, Any]:
        """Return the parameters, the step size as a schedule state dict (or ``None``)."""
        return {"precondition": self.precondition, **self._adaptive_state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (checkpoints from before the mass
        arguments restore with ``adapt_mass=None``, as they ran)."""
        kwargs = self._adaptive_kwargs(state)
        kwargs.setdefault("adapt_mass", None)
        self.__init__(precondition=bool(state.get("precondition", False)), **kwargs)
