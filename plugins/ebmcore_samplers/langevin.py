"""Unadjusted Langevin dynamics (ULA): ``x' = x - eps * grad E(x) + s * sqrt(2 eps) * xi``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_positive
from ebmcore_samplers import _common
from ebmcore_samplers.compiled import CompiledPlan, CompiledSampler, Draws, langevin_step
from ebmcore_samplers.schedules import Schedule, as_schedule, from_state_dict


@dataclass
class LangevinState(SamplerState):
    """State of :class:`Langevin` chains.

    Attributes:
        noise: Preallocated buffer the Gaussian noise is drawn into.
        t: Number of steps taken since :meth:`Langevin.init` (the schedules' clock).
        scale_tril: The preconditioner's factor ``L`` (``M = L Lᵀ``), or ``None``.
    """

    noise: torch.Tensor | None = None
    t: int = 0
    scale_tril: torch.Tensor | None = None


def _check_clamp(clamp: Any) -> tuple[float | None, float | None] | None:
    if clamp is None:
        return None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise ValueError(f"clamp must be a (min, max) pair or None, got {clamp!r}")
    lo, hi = clamp
    for label, v in (("min", lo), ("max", hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or math.isnan(v)):
            raise ValueError(f"clamp {label} must be a number or None, got {v!r}")
    if lo is None and hi is None:
        raise ValueError("clamp needs at least one of min and max; pass clamp=None for no box")
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"clamp must satisfy min < max, got {clamp!r}")
    return (None if lo is None else float(lo), None if hi is None else float(hi))


class Langevin(CompiledSampler, Sampler):
    """Unadjusted Langevin algorithm, also the engine of SGLD-style EBM training.

    Each step computes ``x' = x - eps * g + noise_scale * sqrt(2 * eps) * xi`` with
    ``g = grad E(x)`` (optionally clipped to norm ``grad_clip`` per chain) and ``xi ~ N(0, I)``,
    then clamps ``x'`` to the box ``clamp``. Without a Metropolis correction the stationary
    law is biased by ``O(eps)``: on a Gaussian of variance ``s2`` it has variance
    ``s2 / (1 - eps / (2 * s2))``. ``noise_scale < 1`` is the usual EBM-training heuristic and
    samples a colder distribution.

    With ``precondition`` the step is ``x' = x - eps * M g + noise_scale * sqrt(2 * eps) * L xi``
    for the energy's preconditioner ``M = L Lᵀ`` (``energy.preconditioner()``; a model with
    a Gaussian base gives its covariance): the same stationary law, but every direction moves
    at the pace of its own scale. On images, whose pixels' variances span orders of
    magnitude (a background pixel's dequantisation noise against a stroke's), the stable
    step of plain Langevin is set by the narrowest direction and the wide ones barely move.

    Args:
        step_size: ``eps``, a positive number or a schedule of the step number.
        noise_scale: Multiplier of the injected noise (number or schedule; ``0`` gives
            gradient descent).
        grad_clip: Clip each chain's gradient to at most this Euclidean norm (``None``: no
            clipping).
        clamp: ``(min, max)`` box every coordinate is clamped to after each step; either
            bound may be ``None``.
        precondition: Precondition by the energy's ``preconditioner()`` (torch and
            compiled backends).
    """

    grads_per_step = 1

    def __init__(self, step_size: float | Schedule, noise_scale: float | Schedule = 1.0,
                 grad_clip: float | None = None,
                 clamp: tuple[float | None, float | None] | None = None,
                 precondition: bool = False) -> None:
        self.step_size = as_schedule("step_size", step_size)
        self.noise_scale = as_schedule("noise_scale", noise_scale, allow_zero=True)
        self.grad_clip = (None if grad_clip is None
                          else check_positive("grad_clip", grad_clip))
        self.clamp = _check_clamp(clamp)
        self.precondition = _common.check_flag("precondition", precondition)

    def init(self, energy: Energy, x: torch.Tensor) -> LangevinState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        scale_tril = _common.preconditioner(energy, x) if self.precondition else None
        x, e, g = _common.initial_energy_and_grad(energy, x, finite_start=False)
        return LangevinState(x=x, energy=e, grad=g, noise=torch.empty_like(x), t=0,
                             scale_tril=scale_tril)

    def step(self, energy: Energy, state: LangevinState,
             generator: torch.Generator | None = None
             ) -> tuple[LangevinState, dict[str, torch.Tensor]]:
        """Move every chain once, in place; the info is empty (there is no rejection)."""
        gen = _common.generator_for(generator, state.x)
        x = state.x
        eps = self.step_size(state.t)
        noise_sd = self.noise_scale(state.t) * math.sqrt(2.0 * eps)
        g = state.grad
        if self.grad_clip is not None:
            norm = _common.sq_norm(g).sqrt_()
            scale = (self.grad_clip / norm.clamp_min_(1e-30)).clamp_max_(1.0)
            g = g * _common.per_chain(scale, g.ndim)
        tril = state.scale_tril
        if tril is not None:  # M g = L (Lᵀ g), row by row
            g = (g.flatten(1) @ tril @ tril.T).view_as(x)
        x.add_(g, alpha=-eps)
        # Drop the old gradient before the energy allocates the new one, so that the
        # allocator hands back the same (cache-warm) block instead of a second one.
        state.grad = g = None
        noise = _common.randn_(state.noise, gen)
        if tril is not None:
            noise = (noise.flatten(1) @ tril.T).view_as(x)
        _common.axpy_(x, noise_sd, noise)
        if self.clamp is not None:
            x.clamp_(*self.clamp)
        _common.refresh_gradient(energy, state)
        state.t += 1
        return state, {}

    def _compiled_plan(self, energy: Energy, state: LangevinState,
                       draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.langevin_step`."""
        x = state.x
        lo, hi = self.clamp if self.clamp is not None else (None, None)

        def inputs(t0: int, k: int, d: Draws) -> tuple[torch.Tensor, ...]:
            eps = d.values(self.step_size, t0, k)
            return eps, d.values(self.noise_scale, t0, k) * (2.0 * eps).sqrt(), d.normal(
                k, *x.shape)

        consts = tuple(None if v is None else torch.tensor(v, dtype=x.dtype, device=x.device)
                       for v in (self.grad_clip, lo, hi))
        return CompiledPlan(langevin_step, static=(self.grad_clip is not None, lo is not None,
                                                   hi is not None, state.scale_tril is not None),
                            consts=(*consts, state.scale_tril), inputs=inputs)

    def fused_refusal(self) -> str | None:
        """Preconditioned chains run on torch or compiled only (the kernels have no metric)."""
        return _common.preconditioned_refusal(self)

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """The fused kernels' settings (see ``kernels.dispatch.run_fused``)."""
        return "langevin", {"step_size": self.step_size, "noise_scale": self.noise_scale,
                            "grad_clip": self.grad_clip, "clamp": self.clamp}

    def state_dict(self) -> dict[str, Any]:
        """Return the parameters, schedules as state dicts."""
        return {"step_size": self.step_size.state_dict(),
                "noise_scale": self.noise_scale.state_dict(),
                "grad_clip": self.grad_clip, "clamp": self.clamp,
                "precondition": self.precondition}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step_size = as_schedule("step_size", from_state_dict(state["step_size"]))
        self.noise_scale = as_schedule("noise_scale", from_state_dict(state["noise_scale"]),
                                       allow_zero=True)
        self.grad_clip = state["grad_clip"]
        self.clamp = _check_clamp(state["clamp"])
        self.precondition = bool(state.get("precondition", False))
