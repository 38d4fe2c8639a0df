"""A gradient-free sampler written against the two-layer ebmcore sampler contract."""

from __future__ import annotations

import torch
from ebmcore import Energy, Sampler, SamplerState
from ebmcore.validation import check_energy_output, check_positive


class RandomWalkMetropolis(Sampler):
    """Random-walk Metropolis: propose ``x + step_size * N(0, I)``, accept with ``min(1, e^-dE)``.

    It implements only :meth:`init` and :meth:`step`; the inherited ``sample`` runs the loop,
    burn-in, thinning and diagnostics. Each step costs one energy evaluation and no gradient,
    so it also works for energies without one.

    Args:
        step_size: Standard deviation of the Gaussian proposal (positive).
    """

    #: The info entry that holds each chain's acceptance probability; ``sample`` averages it.
    acceptance_key = "accept_prob"

    def __init__(self, step_size: float = 0.5) -> None:
        self.step_size = check_positive("step_size", step_size)

    def init(self, energy: Energy, x: torch.Tensor) -> SamplerState:
        """Cache the energies of the chains at ``x``."""
        with torch.no_grad():
            e = check_energy_output(energy, x, energy(x))
        return SamplerState(x=x, energy=e)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> tuple[SamplerState, dict[str, torch.Tensor]]:
        """Advance every chain by one Metropolis step.

        Args:
            energy: The target energy.
            state: The chains' current positions and cached energies.
            generator: Source of the proposal noise and acceptance draws.

        Returns:
            The new state and per-chain info: ``accept_prob`` (the Metropolis acceptance
            probability) and ``accepted`` (whether the proposal was taken).
        """
        x = state.x
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        proposal = x + self.step_size * noise
        with torch.no_grad():
            e_new = check_energy_output(energy, proposal, energy(proposal))
        # exp(min(0, E_old - E_new)); a proposal whose energy is NaN or +inf has zero density,
        # so its acceptance probability is 0 by the Metropolis rule rather than NaN.
        accept_prob = torch.exp(torch.clamp(state.energy - e_new, max=0.0))
        accept_prob = torch.where(torch.isnan(accept_prob), torch.zeros_like(accept_prob),
                                  accept_prob)
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
        accepted = u < accept_prob
        mask = accepted.view(-1, *([1] * (x.ndim - 1)))
        new_state = SamplerState(x=torch.where(mask, proposal, x),
                                 energy=torch.where(accepted, e_new, state.energy))
        return new_state, {"accept_prob": accept_prob, "accepted": accepted}

    def state_dict(self) -> dict[str, float]:
        """Return the proposal scale, for checkpoints."""
        return {"step_size": self.step_size}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore the proposal scale saved by :meth:`state_dict`."""
        self.step_size = check_positive("step_size", state["step_size"])
