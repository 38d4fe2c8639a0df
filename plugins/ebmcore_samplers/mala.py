"""Metropolis-adjusted Langevin algorithm (MALA) with per-chain step-size adaptation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore_samplers import _common
from ebmcore_samplers.adaptation import DualAveraging
from ebmcore_samplers.compiled import CompiledPlan, CompiledSampler, Draws, mala_step
from ebmcore_samplers.schedules import Constant, Schedule, as_schedule, from_state_dict


@dataclass
class MALAState(SamplerState):
    """State of :class:`MALA` chains.

    Attributes:
        t: Steps taken since :meth:`MALA.init` (the schedules' clock).
        step_size: Per-chain step sizes ``(B,)`` once adaptation has run, else ``None``
            (the sampler's ``step_size`` schedule applies).
        adaptation: The running :class:`DualAveraging` during burn-in.
        proposal: Buffer for the proposed positions.
        noise: Buffer for the Gaussian noise.
        uniform: Buffer ``(B,)`` for the acceptance draws.
        scale_tril: The preconditioner's factor ``L`` (``M = L Lᵀ``, ``(D, D)``), or ``None``.
    """

    t: int = 0
    step_size: torch.Tensor | None = None
    adaptation: DualAveraging | None = None
    proposal: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    uniform: torch.Tensor | None = None
    scale_tril: torch.Tensor | None = None


def check_adaptable(step_size: Schedule, adapt_step_size: bool) -> None:
    """Refuse to adapt a step size that is a non-constant schedule."""
    if adapt_step_size and not isinstance(step_size, Constant):
        raise ValueError(
            "step_size is a schedule, which cannot be adapted; pass adapt_step_size=False "
            "to follow the schedule, or a number to adapt it")


class MALA(CompiledSampler, Sampler):
    """Metropolis-adjusted Langevin algorithm.

    Proposes ``y = x - eps * grad E(x) + sqrt(2 eps) * xi`` and accepts it per chain with the
    Metropolis-Hastings probability, so the stationary law is exact. Each step costs one
    energy-and-gradient evaluation: the energy and gradient at the current point are cached
    in the state and reused when a proposal is rejected. With ``adapt_step_size`` every
    chain tunes its own step size by dual averaging during burn-in; afterwards the averaged
    step size stays fixed (reported as ``diagnostics["step_size"]``).

    With ``precondition`` the proposal is ``y = x - eps * M g + sqrt(2 eps) * L xi`` for the
    energy's preconditioner ``M = L Lᵀ`` (``energy.preconditioner()``, a ``(D, D)`` factor
    for ``D`` coordinates; a model with a Gaussian base gives its data covariance), and the
    Metropolis-Hastings ratio uses that proposal's density,
    ``-log q(y | x) = |L⁻¹ (y - x + eps M g(x))|² / (4 eps)``, so the stationary law is still
    exact. Why: on an ill-conditioned target one step size cannot suit every direction.
    Images are the typical case: pixel variances span orders of magnitude (a background
    pixel's dequantisation noise against a stroke's), so the step that the narrowest
    direction accepts leaves the wide ones frozen, and any larger one is rejected almost
    always. With ``M`` close to the target's covariance every direction moves at its own
    scale and ``eps`` of order one is accepted. The ratio is computed from ``Lᵀ`` products,
    without inverting ``L``; preconditioned chains run on the torch and compiled
    backends only.

    Args:
        step_size: ``eps``, a positive number (the initial value when adapting) or a
            schedule (only with ``adapt_step_size=False``).
        adapt_step_size: Tune the per-chain step size during burn-in.
        target_accept: Acceptance probability the adaptation aims for (0.574 is optimal
            for MALA in high dimension).
        precondition: Precondition by the energy's ``preconditioner()`` (torch and
            compiled backends).
    """

    acceptance_key = "accept_prob"

    def __init__(self, step_size: float | Schedule, adapt_step_size: bool = True,
                 target_accept: float = 0.574, precondition: bool = False) -> None:
        self.step_size = as_schedule("step_size", step_size)
        self.adapt_step_size = _common.check_flag("adapt_step_size", adapt_step_size)
        self.target_accept = _common.validate_target_accept(target_accept)
        check_adaptable(self.step_size, self.adapt_step_size)
        self.precondition = _common.check_flag("precondition", precondition)

    def init(self, energy: Energy, x: torch.Tensor) -> MALAState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        scale_tril = _common.preconditioner(energy, x) if self.precondition else None
        x, e, g = _common.initial_energy_and_grad(energy, x)
        return MALAState(x=x, energy=e.clone(), grad=g.clone(), proposal=torch.empty_like(x),
                         noise=torch.empty_like(x),
                         uniform=torch.empty(x.shape[0], dtype=x.dtype, device=x.device),
                         scale_tril=scale_tril)

    def step(self, energy: Energy, state: MALAState,
             generator: torch.Generator | None = None
             ) -> tuple[MALAState, dict[str, torch.Tensor]]:
        """Propose, then accept or reject per chain; info has ``accept_prob`` and ``accepted``."""
        gen = _common.generator_for(generator, state.x)
        x, g, y, xi = state.x, state.grad, state.proposal, state.noise
        if state.step_size is None:
            eps: float | torch.Tensor = self.step_size(state.t)
            eps_b: float | torch.Tensor = eps
            sd: float | torch.Tensor = math.sqrt(2.0 * eps)
        else:
            eps = state.step_size
            eps_b = _common.per_chain(eps, x.ndim)
            sd = _common.per_chain((2.0 * eps).sqrt(), x.ndim)
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
        accept_prob = log_alpha.clamp_max_(0.0).exp_().nan_to_num_(nan=0.0)
        accepted = _common.rand_(state.uniform, gen) < accept_prob
        acc_b = _common.per_chain(accepted, x.ndim)
        torch.where(acc_b, y, x, out=x)
        torch.where(acc_b, g_y, g, out=g)
        torch.where(accepted, e_y, state.energy, out=state.energy)
        state.t += 1
        return state, {"accept_prob": accept_prob, "accepted": accepted}

    @staticmethod
    def _propose_preconditioned(energy: Energy, state: MALAState, gen: torch.Generator,
                                eps: float | torch.Tensor, eps_b: float | torch.Tensor,
                                sd: float | torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
        """Write ``y = x - eps M g + sqrt(2 eps) L xi`` into ``state.proposal``.

        Returns ``(E(y), grad E(y), -log q(y|x), -log q(x|y))``, the last two up to the
        constant they share. With ``u(z) = Lᵀ grad E(z)`` and ``w = sqrt(2 eps) xi - eps u(x)``
        the proposal is ``y = x + L w``, and the reverse residual is
        ``L⁻¹ (x - y + eps M grad E(y)) = eps u(y) - w`` exactly, so neither direction
        inverts ``L``.
        """
        x, g, y, xi, tril = state.x, state.grad, state.proposal, state.noise, state.scale_tril
        n = x.shape[0]
        # Rows of the flattened batch: per-chain values broadcast as (B, 1).
        eps_f = eps_b.view(n, 1) if isinstance(eps_b, torch.Tensor) else eps_b
        sd_f = sd.view(n, 1) if isinstance(sd, torch.Tensor) else sd
        xi_f = _common.randn_(xi, gen).view(n, -1)
        forward = _common.sq_norm(xi_f).mul_(0.5)
        w = (g.reshape(n, -1) @ tril).mul_(eps_f).neg_()
        _common.axpy_(w, sd_f, xi_f)  # w = sqrt(2 eps) xi - eps Lᵀ g(x)
        torch.addmm(x.view(n, -1), w, tril.T, out=y.view(n, -1))
        e_y, g_y = energy.energy_and_grad(y)
        # xi is spent: hold eps Lᵀ g(y) - w, that is L⁻¹ r, in its buffer.
        rev = torch.matmul(g_y.reshape(n, -1), tril, out=xi_f).mul_(eps_f).sub_(w)
        backward = _common.sq_norm(rev).div_(4.0 * eps)
        return e_y, g_y, forward, backward

    def adapt(self, state: MALAState, info: dict[str, torch.Tensor], iteration: int,
              n_adapt: int) -> MALAState:
        """Dual-average each chain's step size; fix it to the average at the last iteration."""
        if not self.adapt_step_size:
            return state
        if state.adaptation is None:
            state.adaptation = DualAveraging(
                self.step_size(0) if state.step_size is None else state.step_size,
                self.target_accept, n_chains=state.x.shape[0], dtype=state.x.dtype,
                device=state.x.device)
        state.step_size = state.adaptation.update(info["accept_prob"])
        if iteration >= n_adapt - 1:
            state.step_size = state.adaptation.final()
            state.adaptation = None
        return state

    def final_diagnostics(self, state: MALAState) -> dict[str, Any]:
        """Report the per-chain step sizes in use at the end."""
        if state.step_size is not None:
            return {"step_size": state.step_size.clone()}
        return {"step_size": torch.full((state.x.shape[0],), self.step_size(max(state.t - 1, 0)),
                                        dtype=state.x.dtype, device=state.x.device)}

    def _compiled_adapts(self) -> bool:
        """Adapting burn-in runs on the torch backend; the kept steps then run compiled."""
        return self.adapt_step_size

    def _compiled_plan(self, energy: Energy, state: MALAState, draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.mala_step`."""
        x = state.x
        b = x.shape[0]

        def inputs(t0: int, k: int, d: Draws) -> tuple[torch.Tensor, ...]:
            eps = (d.values(self.step_size, t0, k)[:, None] if state.step_size is None
                   else state.step_size.to(x.dtype))
            return eps.expand(k, b).contiguous(), d.normal(k, *x.shape), d.uniform(k, b)

        return CompiledPlan(mala_step, static=(state.scale_tril is not None,),
                            consts=(state.scale_tril,), inputs=inputs, acceptance=True)

    def fused_refusal(self) -> str | None:
        """Preconditioned chains run on torch or compiled only (the kernels have no metric)."""
        return _common.preconditioned_refusal(self)

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """The fused kernels' settings (see ``kernels.dispatch.run_fused``)."""
        return "mala", {"step_size": self.step_size, "adapt_step_size": self.adapt_step_size,
                        "target_accept": self.target_accept}

    def state_dict(self) -> dict[str, Any]:
        """Return the parameters, the step size as a schedule state dict."""
        return {"step_size": self.step_size.state_dict(),
                "adapt_step_size": self.adapt_step_size, "target_accept": self.target_accept,
                "precondition": self.precondition}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        step_size = as_schedule("step_size", from_state_dict(state["step_size"]))
        check_adaptable(step_size, bool(state["adapt_step_size"]))
        self.step_size = step_size
        self.adapt_step_size = bool(state["adapt_step_size"])
        self.target_accept = _common.validate_target_accept(state["target_accept"])
        self.precondition = _common.check_flag("precondition",
                                               state.get("precondition", False))
