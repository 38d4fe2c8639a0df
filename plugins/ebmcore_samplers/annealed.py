"""Annealed Langevin dynamics over decreasing noise levels (Song & Ermon, 2019)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SampleResult, SamplerState
from ebmcore.validation import check_energy_output, check_int, check_points, check_positive
from ebmcore_samplers._common import check_grad_output, generator_for, randn_


def is_noise_conditional(energy: Energy) -> bool:
    """Whether ``energy`` takes a noise level: declares ``noise_conditional`` or ``sigma``.

    Args:
        energy: The energy to inspect.
    """
    if getattr(energy, "noise_conditional", False) is True:
        return True
    return _accepts_sigma(energy.forward)


def _accepts_sigma(fn: Any) -> bool:
    try:
        return "sigma" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def check_sigmas(sigmas: Any) -> tuple[float, ...]:
    """Return the noise levels as floats after checking: finite, positive, strictly decreasing.

    Args:
        sigmas: The noise levels, largest first.
    """
    if isinstance(sigmas, torch.Tensor):
        sigmas = sigmas.detach().cpu().reshape(-1).tolist()
    if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Sequence):
        raise TypeError(f"sigmas must be a sequence of numbers, got {type(sigmas).__name__}")
    out = []
    for s in sigmas:
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise TypeError(f"sigmas must hold numbers, got {s!r}")
        out.append(float(s))
    if not out:
        raise ValueError("sigmas must hold at least one noise level")
    if not all(math.isfinite(s) and s > 0 for s in out):
        raise ValueError(f"sigmas must be finite and positive, got {out}")
    if any(b >= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"sigmas must be strictly decreasing (largest first), got {out}")
    return tuple(out)


@dataclass
class AnnealedState(SamplerState):
    """State of annealed Langevin chains.

    Attributes:
        x: Positions ``(B, *event)``.
        energy: Energies ``(B,)`` at ``x`` under the noise level of the next step.
        grad: Gradients at ``x`` under that noise level.
        t: Steps taken (the schedule's clock).
        conditional: Whether the energy receives the noise level.
        sigma_grad: Whether its ``energy_and_grad`` takes the noise level (else autograd).
        noise: Buffer for the Gaussian noise.
        sigma: Buffer ``(B,)`` holding the current noise level for the energy call.
    """

    t: int = 0
    conditional: bool = True
    sigma_grad: bool = False
    noise: torch.Tensor | None = None
    sigma: torch.Tensor | None = None


class AnnealedLangevin(Sampler):
    """Annealed Langevin dynamics for noise-conditional energies (Song & Ermon, 2019).

    For each noise level ``sigma_i`` (largest first) it takes ``steps_per_sigma`` unadjusted
    Langevin steps ``x <- x - alpha_i / 2 * grad_x E(x, sigma_i) + sqrt(alpha_i) * z`` with
    ``alpha_i = step_size * sigma_i**2 / sigma_L**2``. ``sample(energy, x0)`` without
    ``n_steps`` runs the whole schedule (``len(sigmas) * steps_per_sigma`` steps, burn-in
    included); steps past the end stay at the last level. One energy-and-gradient call per
    step; ``info`` reports ``sigma`` and ``step_size`` per chain.

    Convention for noise-conditional energies: the energy implements
    ``forward(x, sigma=None)`` or declares ``noise_conditional = True``; it is called as
    ``energy(x, sigma=s)`` with ``s`` a tensor ``(B,)`` of per-chain noise levels (here all
    equal). A closed-form ``energy_and_grad(x, sigma=None)`` is used when it accepts
    ``sigma``; otherwise the gradient comes from autograd through ``forward``. An energy that
    takes no noise level is run with the same step sizes on ``E(x)`` at every level
    (``diagnostics["noise_conditional"]`` is then ``False``).

    Args:
        sigmas: Noise levels, strictly decreasing.
        steps_per_sigma: Langevin steps per noise level.
        step_size: ``eps``, the step size at the last (smallest) noise level.
    """

    grads_per_step = 1

    def __init__(self, sigmas: Sequence[float], steps_per_sigma: int = 100,
                 step_size: float = 2e-5) -> None:
        self.sigmas = check_sigmas(sigmas)
        self.steps_per_sigma = check_int("steps_per_sigma", steps_per_sigma, minimum=1)
        self.step_size = check_positive("step_size", step_size)

    @property
    def n_schedule_steps(self) -> int:
        """Steps in the full schedule: ``len(sigmas) * steps_per_sigma``."""
        return len(self.sigmas) * self.steps_per_sigma

    def level(self, t: int) -> int:
        """Index of the noise level used at step ``t`` (0-based).

        Args:
            t: Step index.
        """
        return min(t // self.steps_per_sigma, len(self.sigmas) - 1)

    def alpha(self, t: int) -> float:
        """Step size ``alpha_i = eps * sigma_i**2 / sigma_L**2`` used at step ``t``.

        Args:
            t: Step index.
        """
        return self.step_size * (self.sigmas[self.level(t)] / self.sigmas[-1]) ** 2

    def _evaluate(self, energy: Energy, state: AnnealedState, x: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        if not state.conditional:
            return energy.energy_and_grad(x)
        state.sigma.fill_(self.sigmas[self.level(state.t)])
        if state.sigma_grad:
            e, g = energy.energy_and_grad(x, sigma=state.sigma)
        else:
            with torch.enable_grad():
                x_ = x.detach().requires_grad_(True)
                e = energy(x_, sigma=state.sigma)
                (g,) = torch.autograd.grad(e.sum(), x_)
        check_energy_output(energy, x, e)
        check_grad_output(energy, x, g)
        return e.detach(), g.detach()

    def init(self, energy: Energy, x: torch.Tensor) -> AnnealedState:
        """Return chains at a copy of ``x`` with energy and gradient at the first level.

        Args:
            energy: The (noise-conditional) energy.
            x: Initial positions ``(B, *event_shape)``.
        """
        check_points("x", x, energy.event_shape)
        x = x.detach().clone(memory_format=torch.contiguous_format)
        state = AnnealedState(x=x, energy=None, conditional=is_noise_conditional(energy),
                              sigma_grad=_accepts_sigma(energy.energy_and_grad),
                              noise=torch.empty_like(x),
                              sigma=torch.empty(x.shape[0], dtype=x.dtype, device=x.device))
        state.energy, state.grad = self._evaluate(energy, state, x)
        return state

    def step(self, energy: Energy, state: AnnealedState,
             generator: torch.Generator | None = None
             ) -> tuple[AnnealedState, dict[str, torch.Tensor]]:
        """Take one Langevin step at the current noise level (updates ``state`` in place).

        Args:
            energy: The (noise-conditional) energy.
            state: The current state.
            generator: Source of randomness.
        """
        gen = generator_for(generator, state.x)
        alpha = self.alpha(state.t)
        sigma_now = self.sigmas[self.level(state.t)]
        x = state.x
        x.add_(state.grad, alpha=-0.5 * alpha).add_(randn_(state.noise, gen),
                                                    alpha=math.sqrt(alpha))
        state.t += 1
        # Cache energy and gradient under the next step's level: one call per step.
        state.energy, state.grad = self._evaluate(energy, state, x)
        b = x.shape[0]
        info = {"sigma": torch.full((b,), sigma_now, dtype=x.dtype, device=x.device),
                "step_size": torch.full((b,), alpha, dtype=x.dtype, device=x.device)}
        return state, info

    def sample(self, energy: Energy, x0: torch.Tensor, n_steps: int | None = None, *,
               burn_in: int = 0, **kwargs: Any) -> SampleResult:
        """Run the annealing schedule from ``x0``; see :meth:`ebmcore.Sampler.sample`.

        Args:
            energy: The (noise-conditional) energy.
            x0: Initial positions ``(B, *event_shape)``; never modified.
            n_steps: Kept steps after ``burn_in``; ``None`` runs to the end of the schedule
                (``len(sigmas) * steps_per_sigma - burn_in`` steps).
            burn_in: Steps run first and not recorded (they advance the schedule too).
            **kwargs: ``thin``, ``generator``, ``return_trajectory``, ``backend``,
                ``progress`` as in :meth:`ebmcore.Sampler.sample`.
        """
        if n_steps is None:
            check_int("burn_in", burn_in, minimum=0)
            n_steps = self.n_schedule_steps - burn_in
            if n_steps < 1:
                raise ValueError(f"burn_in={burn_in} covers the whole schedule of "
                                 f"{self.n_schedule_steps} steps; pass n_steps explicitly")
        return super().sample(energy, x0, n_steps, burn_in=burn_in, **kwargs)

    def final_diagnostics(self, state: AnnealedState) -> dict[str, Any]:
        """Report whether the energy was noise-conditional and the last noise level used.

        Args:
            state: The final state.
        """
        return {"noise_conditional": state.conditional,
                "final_sigma": self.sigmas[self.level(max(state.t - 1, 0))]}

    def state_dict(self) -> dict[str, Any]:
        """Return the schedule's parameters."""
        return {"sigmas": list(self.sigmas), "steps_per_sigma": self.steps_per_sigma,
                "step_size": self.step_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (validated as in the constructor).

        Args:
            state: What :meth:`state_dict` returned.
        """
        self.__init__(**state)  # type: ignore[misc]
