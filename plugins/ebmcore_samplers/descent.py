"""Deterministic descent of an energy: gradient descent and Nesterov's accelerated descent.

Equilibrium matching (Wang & Du 2025) learns a landscape whose descent carries noise to the
data, so its samples come from descending the energy rather than sampling ``exp(-E)``:

    gradient descent:  x' = x - eta * grad E(x)
    Nesterov:          v' = mu v - eta * grad E(x + mu v),   x' = x + v'

(Sutskever et al.'s form of Nesterov's method, as TorchEBM 0.8.9's ``NesterovSampler``). Both
are :class:`ebmcore.Sampler` s with ``init`` / ``step``, so the one sampling loop runs them
(trajectories, thinning, ``on_keep``, the energy trace, distributed chains). Each step
reports the gradient's Euclidean norm per chain in its info (``grad_norm``), a convergence
signal; there is no acceptance. An optional ``noise`` adds ``noise * N(0, I)`` after each
move (default 0: deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.field import energy_of
from ebmcore.sampler import Sampler, SampleResult, SamplerState
from ebmcore.validation import check_positive
from ebmcore_samplers import _common

__all__ = ["DescentState", "GradientDescent", "Nesterov"]


@dataclass
class DescentState(SamplerState):
    """State of descending chains.

    Attributes:
        velocity: :class:`Nesterov`'s momentum ``v`` per chain, shaped like ``x`` (zero at
            the start); ``None`` for :class:`GradientDescent`.
        grad_norm: The Euclidean norm ``(B,)`` of the gradient the last step used (``None``
            before the first step).
    """

    velocity: torch.Tensor | None = None
    grad_norm: torch.Tensor | None = None


class _Descent(Sampler):
    """What both descents share: checked step size and noise, energy-or-field targets."""

    #: Per-chain info entries gathered in chain order by distributed sampling.
    chain_diagnostics = (*Sampler.chain_diagnostics, "grad_norm")

    def __init__(self, step_size: float, noise: float = 0.0) -> None:
        self.step_size = check_positive("step_size", step_size)
        self.noise = check_positive("noise", noise, allow_zero=True)

    def sample(self, energy: Energy, x0: torch.Tensor, n_steps: int,
               **kwargs: Any) -> SampleResult:
        """:meth:`ebmcore.Sampler.sample`, also taking a field that is ``-∇E``.

        Raises:
            TypeError: For a field with no energy (integrate it with the ``flow`` sampler).
        """
        return super().sample(energy_of(energy), x0, n_steps, **kwargs)

    def _perturb(self, x: torch.Tensor, generator: torch.Generator | None) -> None:
        """Add ``noise * N(0, I)`` to ``x`` in place when ``noise > 0``."""
        if self.noise > 0:
            gen = _common.generator_for(generator, x)
            x.add_(torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device),
                   alpha=self.noise)

    def final_diagnostics(self, state: DescentState) -> dict[str, Any]:
        """``grad_norm``: per chain, the norm of the gradient the last step used."""
        return {} if state.grad_norm is None else {"grad_norm": state.grad_norm}

    def state_dict(self) -> dict[str, Any]:
        """Return the step size and noise."""
        return {"step_size": self.step_size, "noise": self.noise}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.step_size = check_positive("step_size", state["step_size"])
        self.noise = check_positive("noise", state["noise"], allow_zero=True)


class GradientDescent(_Descent):
    """Gradient descent ``x' = x - eta * grad E(x)`` (plus optional noise), per chain.

    On a quadratic ``E = x^T A x / 2`` the distance to the minimum shrinks by
    ``|1 - eta * lambda|`` per step along each eigenvector (eigenvalue ``lambda``), so it
    converges for ``eta < 2 / lambda_max``.

    Args:
        step_size: ``eta``, a positive number.
        noise: Standard deviation of Gaussian noise added after each step (default 0).
    """

    def init(self, energy: Energy, x: torch.Tensor) -> DescentState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        x, e, g = _common.initial_energy_and_grad(energy, x)
        return DescentState(x=x, energy=e, grad=g)

    def step(self, energy: Energy, state: DescentState,
             generator: torch.Generator | None = None
             ) -> tuple[DescentState, dict[str, torch.Tensor]]:
        """Move every chain down its gradient, in place; info holds ``grad_norm`` ``(B,)``,
        the norm of the gradient the step used."""
        state.grad_norm = _common.sq_norm(state.grad).sqrt()
        state.x.add_(state.grad, alpha=-self.step_size)
        self._perturb(state.x, generator)
        _common.refresh_gradient(energy, state)
        return state, {"grad_norm": state.grad_norm}


class Nesterov(_Descent):
    """Nesterov's accelerated descent: ``v' = mu v - eta grad E(x + mu v)``, ``x' = x + v'``.

    The gradient is taken at the look-ahead point ``x + mu v``; the state's cached energy and
    gradient are those of ``x`` itself only at the start (afterwards the loop evaluates the
    energy where it records it). On a quadratic with condition number ``kappa``, the choice
    ``eta = 1 / L`` and ``mu = (sqrt(kappa) - 1) / (sqrt(kappa) + 1)`` contracts the error
    by about ``1 - 1 / sqrt(kappa)`` per step, against gradient descent's ``1 - 1 / kappa``.

    Args:
        step_size: ``eta``, a positive number.
        momentum: ``mu`` in ``[0, 1)`` (default 0.9; 0 is gradient descent).
        noise: Standard deviation of Gaussian noise added after each step (default 0).
    """

    def __init__(self, step_size: float, momentum: float = 0.9, noise: float = 0.0) -> None:
        super().__init__(step_size, noise)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def init(self, energy: Energy, x: torch.Tensor) -> DescentState:
        """Return chains at a copy of ``x``, at rest, with their energy and gradient."""
        x, e, g = _common.initial_energy_and_grad(energy, x)
        return DescentState(x=x, energy=e, grad=g, velocity=torch.zeros_like(x))

    def step(self, energy: Energy, state: DescentState,
             generator: torch.Generator | None = None
             ) -> tuple[DescentState, dict[str, torch.Tensor]]:
        """Move every chain once, in place; info holds ``grad_norm`` ``(B,)``, the norm of
        the look-ahead gradient the step used."""
        v = state.velocity
        lookahead = state.x + self.momentum * v
        grad = _common.check_grad_output(energy, lookahead, energy.grad(lookahead)).detach()
        v.mul_(self.momentum).add_(grad, alpha=-self.step_size)
        state.x.add_(v)
        self._perturb(state.x, generator)
        # The gradient at x itself is not needed for the next move; the energy only when
        # the loop records this step.
        state.grad = None
        state.energy = energy(state.x).detach() if state.need_energy else None
        state.grad_norm = _common.sq_norm(grad).sqrt()
        return state, {"grad_norm": state.grad_norm}

    def state_dict(self) -> dict[str, Any]:
        """Return the step size, momentum and noise."""
        return {**super().state_dict(), "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self.momentum = float(state["momentum"])
