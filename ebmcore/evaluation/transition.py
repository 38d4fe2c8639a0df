"""The core's default AIS transition: one Metropolis-adjusted Langevin (MALA) step.

Annealed importance sampling needs a kernel that leaves each intermediate distribution
exactly invariant, and nothing more: no adaptation, no backends, no trajectory. The core
keeps this small one so that :func:`ebmcore.evaluation.ais.ais` works with no sampler
plugin; any :class:`ebmcore.Sampler` (by instance, or by name through the registry) can
replace it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_energy_output, check_positive


@dataclass
class TransitionState(SamplerState):
    """:class:`MALATransition` chains: positions, cached energies and gradients, and the
    preconditioner's factor ``L`` (``None`` without preconditioning)."""

    scale_tril: torch.Tensor | None = None


class MALATransition(Sampler):
    """Metropolis-adjusted Langevin steps with a fixed step size, optionally preconditioned.

    Proposes ``y = x - eps M g(x) + sqrt(2 eps) L xi`` (``M = L Lᵀ``; ``L = I`` without
    preconditioning) and accepts it per chain with the Metropolis-Hastings probability, so
    every target is left exactly invariant. The energy and gradient at the current point are
    cached in the state: one energy-and-gradient evaluation per step.

    Args:
        step_size: ``eps``, a positive number.
        precondition: Move by the energy's :meth:`~ebmcore.Energy.preconditioner` factor
            ``L`` (required to exist then).
    """

    acceptance_key = "accept_prob"

    def __init__(self, step_size: float = 0.1, precondition: bool = False) -> None:
        self.step_size = check_positive("step_size", step_size)
        if not isinstance(precondition, bool):
            raise TypeError(f"precondition must be True or False, got {precondition!r}")
        self.precondition = precondition

    def init(self, energy: Energy, x: torch.Tensor) -> TransitionState:
        """Return chains at a copy of ``x`` with their energy and gradient cached; with
        ``precondition`` the energy's factor ``L`` is cached too (as ``state.scale_tril``)."""
        x = x.detach().clone(memory_format=torch.contiguous_format)
        e, g = energy.energy_and_grad(x)
        check_energy_output(energy, x, e)
        tril = self._factor(energy, x) if self.precondition else None
        return TransitionState(x=x, energy=e.detach(), grad=g.detach(), scale_tril=tril)

    @staticmethod
    def _factor(energy: Energy, x: torch.Tensor) -> torch.Tensor:
        tril = energy.preconditioner()
        dim = math.prod(x.shape[1:])
        if tril is None:
            raise ValueError(f"precondition=True needs an energy with a preconditioner(); "
                             f"{type(energy).__name__} has none")
        if tuple(tril.shape) != (dim, dim) or not bool(torch.isfinite(tril).all()):
            raise ValueError(f"{type(energy).__name__}.preconditioner() must return a finite "
                             f"({dim}, {dim}) factor, got shape {tuple(tril.shape)}")
        return tril.detach().to(device=x.device, dtype=x.dtype)

    def step(self, energy: Energy, state: TransitionState,
             generator: torch.Generator | None = None
             ) -> tuple[TransitionState, dict[str, torch.Tensor]]:
        """Propose, then accept or reject per chain; info has ``accept_prob``."""
        x, g, eps = state.x, state.grad, self.step_size
        n = x.shape[0]
        tril = state.scale_tril
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype,
                         device=x.device).view(n, -1)
        # In L's coordinates: w = sqrt(2 eps) xi - eps Lᵀ g(x), y = x + L w; the reverse
        # residual L⁻¹ (x - y + eps M g(y)) is eps Lᵀ g(y) - w, so L is never inverted.
        u = g.reshape(n, -1) if tril is None else g.reshape(n, -1) @ tril
        w = math.sqrt(2.0 * eps) * xi - eps * u
        step = w if tril is None else w @ tril.T
        y = x + step.view_as(x)
        e_y, g_y = energy.energy_and_grad(y)
        u_y = g_y.reshape(n, -1) if tril is None else g_y.reshape(n, -1) @ tril
        forward = 0.5 * xi.square().sum(1)
        backward = (eps * u_y - w).square().sum(1) / (4.0 * eps)
        log_alpha = state.energy - e_y + forward - backward
        accept_prob = log_alpha.clamp_max(0.0).exp().nan_to_num(nan=0.0)
        uniform = torch.rand(n, generator=generator, dtype=x.dtype, device=x.device)
        accepted = uniform < accept_prob
        keep = accepted.view(n, *([1] * (x.dim() - 1)))
        state.x = torch.where(keep, y, x)
        state.grad = torch.where(keep, g_y, g)
        state.energy = torch.where(accepted, e_y, state.energy)
        return state, {"accept_prob": accept_prob, "accepted": accepted}
