"""Hamiltonian Monte Carlo with diagonal or dense mass, step-size jitter and adaptation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler
from ebmcore.validation import check_int
from ebmcore_samplers import _common
from ebmcore_samplers._adaptive import AdaptiveSampler, AdaptiveState
from ebmcore_samplers.compiled import CompiledPlan, CompiledSampler, Draws, hmc_step
from ebmcore_samplers.metric import Metric
from ebmcore_samplers.schedules import Schedule

__all__ = ["DIVERGENCE_THRESHOLD", "HMC", "HMCState", "Metric"]

#: An energy error (H_new - H_old) above this marks the trajectory divergent.
DIVERGENCE_THRESHOLD = 1000.0


def leapfrog_(energy: Energy, metric: Metric, x: torch.Tensor, p: torch.Tensor,
              grad: torch.Tensor, step_size: float | torch.Tensor, n_steps: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``n_steps`` leapfrog steps in place on ``x`` ``(B, *event)`` and ``p`` ``(B, D)``.

    ``grad`` is the energy gradient at the starting ``x``; the intermediate steps ask only
    for gradients, the last for energy and gradient. Costs exactly ``n_steps`` evaluations.
    The two half kicks between full steps are merged into one full kick. ``step_size`` is one
    float or a ``(B, 1)`` tensor of per-chain step sizes. :class:`HMC` and ``chees`` share it.

    Returns:
        The energies ``(B,)`` and gradients (shaped like ``x``) at the end point.
    """
    b = x.shape[0]
    xf = x.view(b, -1)
    _common.axpy_(p, -0.5 * step_size, grad.reshape(b, -1))
    for i in range(n_steps):
        _common.axpy_(xf, step_size, metric.velocity(p))
        if i < n_steps - 1:
            _common.axpy_(p, -step_size, energy.grad(x).reshape(b, -1))
    e1, g1 = energy.energy_and_grad(x)
    _common.axpy_(p, -0.5 * step_size, g1.reshape(b, -1))
    return e1.detach(), g1.detach()


@dataclass
class HMCState(AdaptiveState):
    """State of :class:`HMC` chains (see :class:`~ebmcore_samplers._adaptive.AdaptiveState`).

    Attributes:
        momentum: Preallocated momentum buffer ``(B, D)``.
        position: Preallocated buffer for the trajectory's position.
    """

    momentum: torch.Tensor | None = None
    position: torch.Tensor | None = None


class HMC(AdaptiveSampler, CompiledSampler, Sampler):
    """Hamiltonian Monte Carlo with a leapfrog integrator and per-chain Metropolis correction.

    Every trajectory draws momenta ``p ~ N(0, M)``, takes ``n_leapfrog`` leapfrog steps and
    accepts the end point with probability ``min(1, exp(H_old - H_new))``. The gradient at
    the current point is cached, so a trajectory costs exactly ``n_leapfrog`` gradient
    evaluations (the last one also returns the energy; info ``n_grad``, plus the step-size
    search's evaluations at the first step when ``step_size=None``). A trajectory whose
    energy error exceeds 1000 (or is not finite) is flagged ``divergent`` in the info.

    During burn-in, ``adapt_step_size`` tunes each chain's step size by dual averaging and
    ``adapt_mass`` estimates the inverse mass as the (Welford, regularised) covariance of
    the positions pooled over chains, in Stan's windows
    (:func:`~ebmcore_samplers.adaptation.mass_windows`).

    Args:
        step_size: Leapfrog step size: a positive number (the initial value when adapting),
            a schedule (only with ``adapt_step_size=False``), or ``None`` (default): found
            per chain at the first step by the Hoffman & Gelman heuristic, then adapted
            during burn-in.
        n_leapfrog: Leapfrog steps per trajectory (the gradient evaluations per step).
        mass: ``None`` (identity), a vector ``(D,)`` of diagonal masses, or a symmetric
            positive-definite matrix ``(D, D)``; ``D`` is the flattened event size.
        jitter: Draw each trajectory's step size uniformly from
            ``step_size * [1 - jitter, 1 + jitter]`` per chain (``0 <= jitter < 1``).
        adapt_step_size: Tune the per-chain step size during burn-in.
        adapt_mass: ``"diag"`` (default), ``"dense"`` or ``None``: estimate the inverse mass
            during burn-in (``True`` / ``False`` are deprecated spellings).
        target_accept: Acceptance probability the adaptation aims for.
        inv_mass: Deprecated: the inverse of ``mass`` (vector or matrix).
    """

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def __init__(self, step_size: float | Schedule | None = None, n_leapfrog: int = 10,
                 mass: Any = None, jitter: float = 0.0, adapt_step_size: bool = True,
                 adapt_mass: str | None = "diag", target_accept: float = 0.8, *,
                 inv_mass: Any = None) -> None:
        if inv_mass is not None:
            if mass is not None:
                raise ValueError("pass mass or the deprecated inv_mass, not both")
            warnings.warn("inv_mass is deprecated; pass mass (its inverse)",
                          DeprecationWarning, stacklevel=2)
            inv = torch.as_tensor(inv_mass, dtype=torch.float64)
            mass = 1.0 / inv if inv.ndim == 1 else torch.linalg.inv(inv)
        self.n_leapfrog = check_int("n_leapfrog", n_leapfrog, minimum=1)
        self._set_adaptive(step_size, adapt_step_size, target_accept, mass, adapt_mass,
                           jitter)

    @property
    def grads_per_step(self) -> int:  # type: ignore[override]
        """Gradient evaluations per trajectory: ``n_leapfrog``."""
        return self.n_leapfrog

    def init(self, energy: Energy, x: torch.Tensor) -> HMCState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        x, e, g = _common.initial_energy_and_grad(energy, x)
        b, d = x.shape[0], x[0].numel()
        return HMCState(x=x, energy=e.clone(), grad=g.clone(),
                        momentum=torch.empty((b, d), dtype=x.dtype, device=x.device),
                        position=torch.empty_like(x),
                        **self._adaptive_fields(x, self.n_leapfrog))

    def step(self, energy: Energy, state: HMCState,
             generator: torch.Generator | None = None
             ) -> tuple[HMCState, dict[str, torch.Tensor]]:
        """Run one trajectory per chain; info has ``accept_prob``, ``accepted``,
        ``divergent``, ``energy_error`` and ``n_grad``."""
        gen = _common.generator_for(generator, state.x)
        searched = self._ensure_step_size(energy, state, gen)
        metric = state.metric
        eps = self._step_sizes(state, gen)
        if isinstance(eps, torch.Tensor):
            eps = eps.view(-1, 1)
        p = metric.draw_(state.momentum, gen)
        h0 = metric.kinetic(p).add_(state.energy)
        x1 = state.position.copy_(state.x)
        e1, g1 = leapfrog_(energy, metric, x1, p, state.grad, eps, self.n_leapfrog)
        energy_error = metric.kinetic(p).add_(e1).sub_(h0)
        divergent = ~(energy_error <= DIVERGENCE_THRESHOLD)  # NaN counts as divergent
        accept_prob = energy_error.neg().clamp_max_(0.0).exp_().nan_to_num_(nan=0.0)
        accepted = _common.rand_(state.uniform, gen) < accept_prob
        acc_b = _common.per_chain(accepted, state.x.ndim)
        torch.where(acc_b, x1, state.x, out=state.x)
        torch.where(acc_b, g1.reshape(state.x.shape), state.grad, out=state.grad)
        torch.where(accepted, e1, state.energy, out=state.energy)
        state.t += 1
        return state, {"accept_prob": accept_prob, "accepted": accepted,
                       "divergent": divergent, "energy_error": energy_error,
                       "n_grad": self._n_grad_info(state, searched)}

    def _compiled_plan(self, energy: Energy, state: HMCState, draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.hmc_step`."""
        self._ensure_step_size(energy, state, draws.generator)
        x, metric = state.x, state.metric
        b, d = x.shape[0], x[0].numel()

        def inputs(t0: int, k: int, dr: Draws) -> tuple[torch.Tensor, ...]:
            eps = self._compiled_step_sizes(state, t0, k, dr)
            return eps, dr.normal(k, b, d), dr.uniform(k, b)

        consts = (None, None) if metric.kind == "identity" else (metric.inv, metric.sqrt)
        return CompiledPlan(hmc_step, static=(metric.kind, self.n_leapfrog,
                                              DIVERGENCE_THRESHOLD),
                            consts=consts, inputs=inputs, grads_per_step=self.n_leapfrog,
                            acceptance=True, divergence=True)

    def fused_refusal(self) -> str | None:
        """Why not fused: ``step_size=None``; the kernels check the mass (``params_reason``)."""
        return self._adaptive_refusal("hmc")

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """The fused kernels' settings (see ``kernels.dispatch.run_fused``)."""
        return "hmc", {"step_size": self.step_size, "n_leapfrog": self.n_leapfrog,
                       "mass": self.mass, "jitter": self.jitter,
                       "adapt_step_size": self.adapt_step_size, "adapt_mass": self.adapt_mass,
                       "target_accept": self.target_accept}

    def state_dict(self) -> dict[str, Any]:
        """Return the parameters, the step size as a schedule state dict (or ``None``)."""
        return {"n_leapfrog": self.n_leapfrog, **self._adaptive_state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.__init__(n_leapfrog=state["n_leapfrog"], **self._adaptive_kwargs(state))
