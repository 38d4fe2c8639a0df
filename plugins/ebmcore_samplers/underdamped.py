"""Underdamped (kinetic) Langevin dynamics, integrated with the BAOAB splitting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_positive
from ebmcore_samplers import _common
from ebmcore_samplers.compiled import CompiledPlan, CompiledSampler, Draws, underdamped_step
from ebmcore_samplers.schedules import Schedule, as_schedule, from_state_dict


@dataclass
class UnderdampedState(SamplerState):
    """State of :class:`UnderdampedLangevin` chains.

    Attributes:
        momentum: Momenta ``p`` with the shape of ``x`` (drawn from ``N(0, mass)`` on the
            first step, since :meth:`UnderdampedLangevin.init` takes no generator).
        noise: Preallocated buffer the Gaussian noise is drawn into.
        t: Steps taken since :meth:`UnderdampedLangevin.init` (the schedules' clock).
    """

    momentum: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    t: int = 0


class UnderdampedLangevin(CompiledSampler, Sampler):
    """Underdamped Langevin dynamics ``dx = p/m dt``, ``dp = -grad E dt - gamma p dt + ...``.

    One step of size ``h`` is the BAOAB splitting (Leimkuhler & Matthews, 2013): a half kick
    ``p -= h/2 grad E(x)`` (B), a half drift ``x += h/2 p/m`` (A), the exact
    Ornstein-Uhlenbeck update ``p = c p + sqrt((1 - c^2) m) xi`` with ``c = exp(-gamma h)``
    (O), another half drift (A) and a half kick at the new point (B). One gradient per step
    (cached across steps); no Metropolis correction. BAOAB's configurational bias is
    ``O(h^2)`` and vanishes for Gaussian targets, where ``x`` is sampled exactly for any stable
    ``h``.

    Args:
        step_size: ``h``, a positive number or a schedule of the step number.
        friction: ``gamma``, a positive number or a schedule (large values approach
            overdamped Langevin; ``gamma h`` around 1 mixes well).
        mass: Scalar mass ``m``.
    """

    grads_per_step = 1

    def __init__(self, step_size: float | Schedule, friction: float | Schedule = 1.0,
                 mass: float = 1.0) -> None:
        self.step_size = as_schedule("step_size", step_size)
        self.friction = as_schedule("friction", friction)
        self.mass = check_positive("mass", mass)

    def init(self, energy: Energy, x: torch.Tensor) -> UnderdampedState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        x, e, g = _common.initial_energy_and_grad(energy, x, finite_start=False)
        return UnderdampedState(x=x, energy=e, grad=g, momentum=None,
                                noise=torch.empty_like(x), t=0)

    def step(self, energy: Energy, state: UnderdampedState,
             generator: torch.Generator | None = None
             ) -> tuple[UnderdampedState, dict[str, torch.Tensor]]:
        """Take one BAOAB step for every chain, in place; the info is empty."""
        gen = _common.generator_for(generator, state.x)
        x, xi, m = state.x, state.noise, self.mass
        h = self.step_size(state.t)
        c = math.exp(-self.friction(state.t) * h)
        if state.momentum is None:
            state.momentum = _common.randn_(torch.empty_like(x), gen).mul_(math.sqrt(m))
        p = state.momentum
        p.add_(state.grad, alpha=-0.5 * h)                        # B
        x.add_(p, alpha=0.5 * h / m)                               # A
        p.mul_(c).add_(_common.randn_(xi, gen), alpha=math.sqrt((1.0 - c * c) * m))  # O
        x.add_(p, alpha=0.5 * h / m)                               # A
        _common.refresh_gradient(energy, state)
        p.add_(state.grad, alpha=-0.5 * h)                        # B
        state.t += 1
        return state, {}

    def _compiled_plan(self, energy: Energy, state: UnderdampedState,
                       draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.underdamped_step`."""
        x, m = state.x, self.mass
        if state.momentum is None:  # as the eager first step: p ~ N(0, m), from the generator
            state.momentum = draws.normal(*x.shape, tag="momentum").clone().mul_(math.sqrt(m))

        def inputs(t0: int, k: int, d: Draws) -> tuple[torch.Tensor, ...]:
            h = d.values(self.step_size, t0, k)
            c = (-d.values(self.friction, t0, k) * h).exp()
            return 0.5 * h, 0.5 * h / m, c, ((1.0 - c * c) * m).sqrt(), d.normal(k, *x.shape)

        return CompiledPlan(underdamped_step, static=(), consts=(), inputs=inputs,
                            extra=("momentum",))

    def state_dict(self) -> dict[str, Any]:
        """Return the parameters, schedules as state dicts."""
        return {"step_size": self.step_size.state_dict(),
                "friction": self.friction.state_dict(), "mass": self.mass}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.__init__(step_size=from_state_dict(state["step_size"]),
                      friction=from_state_dict(state["friction"]), mass=state["mass"])
