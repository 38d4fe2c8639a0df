"""The No-U-Turn sampler (multinomial, Betancourt 2017) with chains in lockstep."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_int, check_positive
from ebmcore_samplers._common import (
    check_flag,
    generator_for,
    initial_energy_and_grad,
    validate_target_accept,
)
from ebmcore_samplers._nuts_tree import find_reasonable_step_size, transition
from ebmcore_samplers.adaptation import DualAveraging, Welford, mass_windows


@dataclass
class NUTSState(SamplerState):
    """State of a batch of NUTS chains.

    Attributes:
        x: Positions ``(B, *event_shape)``.
        energy: Energies ``(B,)`` at ``x``.
        grad: Gradients at ``x``.
        step_size: Per-chain step sizes ``(B,)``.
        inv_mass: Diagonal inverse mass with the event shape (``None``: the identity).
        search_step_size: Run the step-size heuristic before the next transition.
        dual: Step-size adaptation in progress during burn-in, else ``None``.
        welford: Variance accumulator of the mass adaptation in progress, else ``None``.
    """

    step_size: torch.Tensor | None = None
    inv_mass: torch.Tensor | None = None
    search_step_size: bool = False
    dual: DualAveraging | None = None
    welford: Welford | None = None


class NUTS(Sampler):
    """No-U-Turn sampler with multinomial trajectory sampling, all chains in lockstep.

    Each chain builds its own tree (Betancourt 2017, as in Stan and BlackJAX): random
    direction per doubling, the generalised U-turn criterion on every balanced sub-tree,
    divergence when the energy error exceeds ``max_energy_error``. All chains step together;
    a chain whose tree has terminated stops contributing, and every leapfrog step is one
    batched energy-and-gradient call. Per-chain ``info``: ``acceptance`` (mean acceptance
    statistic over the tree, what adaptation targets), ``tree_depth``, ``n_grad`` (gradient
    evaluations), ``diverged`` and ``step_size``.

    During burn-in (``sample(..., burn_in=n)``) the per-chain step size is tuned by dual
    averaging toward ``target_accept``, and with ``adapt_mass`` a diagonal mass matrix is
    estimated from the positions of all chains (Welford, regularised as in Stan) in two
    windows; after each mass update the step size is searched for again.

    Args:
        step_size: Initial leapfrog step size; ``None`` finds a reasonable one per chain
            with the heuristic of Hoffman & Gelman (2014) before the first transition.
        max_tree_depth: Maximum number of trajectory doublings (at most
            ``2**max_tree_depth - 1`` gradient evaluations per transition).
        target_accept: Acceptance statistic that step-size adaptation aims for, in (0, 1).
        adapt_mass: Estimate a diagonal mass matrix during burn-in.
        adapt_step_size: Tune the step size by dual averaging during burn-in.
        max_energy_error: Energy error ``H - H0`` beyond which a trajectory is divergent.
    """

    acceptance_key = "acceptance"
    divergence_key = "diverged"

    def __init__(self, step_size: float | None = None, max_tree_depth: int = 10,
                 target_accept: float = 0.8, adapt_mass: bool = True,
                 adapt_step_size: bool = True, max_energy_error: float = 1000.0) -> None:
        self.step_size = None if step_size is None else check_positive("step_size", step_size)
        self.max_tree_depth = check_int("max_tree_depth", max_tree_depth, minimum=1)
        self.target_accept = validate_target_accept(target_accept)
        self.adapt_mass = check_flag("adapt_mass", adapt_mass)
        self.adapt_step_size = check_flag("adapt_step_size", adapt_step_size)
        self.max_energy_error = check_positive("max_energy_error", max_energy_error)

    def init(self, energy: Energy, x: torch.Tensor) -> NUTSState:
        """Return the state of chains at ``x`` (a copy), caching energy and gradient.

        Args:
            energy: The target energy.
            x: Initial positions ``(B, *event_shape)``.
        """
        x, e, g = initial_energy_and_grad(energy, x)
        bad = ~torch.isfinite(e)
        if bool(bad.any()):
            raise ValueError(f"x has non-finite energy in {int(bad.sum())} of {x.shape[0]} "
                             f"chains; NUTS needs finite starting energies")
        eps = 1.0 if self.step_size is None else self.step_size
        return NUTSState(x=x, energy=e, grad=g,
                         step_size=torch.full_like(e, eps),
                         search_step_size=self.step_size is None)

    def step(self, energy: Energy, state: NUTSState,
             generator: torch.Generator | None = None) -> tuple[NUTSState, dict[str, Any]]:
        """Run one NUTS transition for every chain.

        Args:
            energy: The target energy.
            state: The current state.
            generator: Source of randomness.
        """
        gen = generator_for(generator, state.x)
        if state.search_step_size:
            state.step_size = find_reasonable_step_size(
                energy, state.x, state.energy, state.grad, state.step_size, state.inv_mass,
                gen)
            state.search_step_size = False
            if state.dual is not None:
                state.dual.restart(state.step_size)
        x, e, g, info = transition(energy, state.x, state.energy, state.grad,
                                   state.step_size, state.inv_mass, self.max_tree_depth,
                                   self.max_energy_error, gen)
        info["step_size"] = state.step_size
        return replace(state, x=x, energy=e, grad=g), info

    def adapt(self, state: NUTSState, info: dict[str, Any], iteration: int,
              n_adapt: int) -> NUTSState:
        """Dual-average the step sizes and estimate the diagonal mass during burn-in.

        Args:
            state: The state after burn-in step ``iteration``.
            info: That step's info.
            iteration: Burn-in step index, from 0.
            n_adapt: Number of burn-in steps.
        """
        if iteration == 0 and self.adapt_step_size:
            state.dual = DualAveraging(state.step_size, self.target_accept)
        if state.dual is not None:
            state.step_size = state.dual.update(info["acceptance"]).to(state.x.dtype)
        if self.adapt_mass:
            self._adapt_mass(state, iteration, n_adapt)
        if iteration == n_adapt - 1 and state.dual is not None:
            state.step_size = state.dual.final().to(state.x.dtype)
            state.dual = None
        return state

    def _adapt_mass(self, state: NUTSState, iteration: int, n_adapt: int) -> None:
        for start, end in mass_windows(n_adapt):
            if not start <= iteration < end:
                continue
            if state.welford is None:
                state.welford = Welford(state.x[0].numel(), device=state.x.device)
            state.welford.update(state.x)
            if iteration == end - 1:
                var = state.welford.covariance()
                state.inv_mass = var.to(state.x.dtype).reshape(state.x.shape[1:])
                state.welford = None
                # The good step size changes with the mass: search again, then re-adapt.
                state.search_step_size = self.adapt_step_size
            return

    def final_diagnostics(self, state: NUTSState) -> dict[str, Any]:
        """Report the per-chain step sizes and the diagonal inverse mass in use at the end.

        Args:
            state: The final state.
        """
        out: dict[str, Any] = {"step_size": state.step_size.clone()}
        if state.inv_mass is not None:
            out["inv_mass"] = state.inv_mass.clone()
        return out

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's settings."""
        return {"step_size": self.step_size, "max_tree_depth": self.max_tree_depth,
                "target_accept": self.target_accept, "adapt_mass": self.adapt_mass,
                "adapt_step_size": self.adapt_step_size,
                "max_energy_error": self.max_energy_error}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings saved by :meth:`state_dict` (validated as in the constructor).

        Args:
            state: What :meth:`state_dict` returned.
        """
        self.__init__(**state)  # type: ignore[misc]
