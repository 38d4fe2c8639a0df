"""A loss with persistent negative chains, written against the declared ``Loss`` protocol."""

from __future__ import annotations

from typing import Any

import torch
from ebmcore import Energy, Loss, LossOutput, Sampler
from ebmcore.validation import check_int, check_points, check_positive


class ReplayContrastive(Loss):
    """Contrastive loss with persistent chains: ``mean E(data) - mean E(chains)``.

    The loss keeps ``n_chains`` chains between calls in a registered buffer (so they travel
    in ``state_dict``, and checkpoints resume them). Each call advances them ``k`` steps with
    its sampler, from noise over the data's range on the first call, and adds
    ``alpha * (E(data)² + E(chains)²)`` to keep energies near zero.

    What it declares to the trainer:

    - ``takes_sampler=True`` on its :class:`ebmcore.Component`: a run passes the sampler it
      configured as ``sampler=``; it is stored as :attr:`sampler`.
    - ``chain_counts = ("n_chains",)``: a distributed run gives each rank its share.
    - ``sharded_state = ("chains",)``: checkpoints gather and split the chains' rows.
    - :meth:`persistent_chains`: the chains, which runs plot.
    - Random draws come from :attr:`generator` (set by the trainer with ``set_generator``).

    Args:
        sampler: The sampler that advances the chains, an :class:`ebmcore.Sampler` or a
            registered sampler name.
        k: Sampler steps per call.
        n_chains: Number of persistent chains.
        alpha: Weight of the energy-magnitude penalty.
    """

    chain_counts = ("n_chains",)
    sharded_state = ("chains",)

    def __init__(self, sampler: Sampler | str = "random_walk_metropolis", k: int = 10,
                 n_chains: int = 1000, alpha: float = 0.1) -> None:
        super().__init__()
        if isinstance(sampler, str):
            import ebmcore

            sampler = ebmcore.create("sampler", sampler)
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler must be an ebmcore.Sampler or a sampler name, "
                            f"got {type(sampler).__name__}")
        self.sampler = sampler
        self.k = check_int("k", k, minimum=1)
        self.n_chains = check_int("n_chains", n_chains, minimum=1)
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        # Shaped on the first call, when the data's event shape is known.
        self.register_buffer("chains", torch.empty(0))

    def persistent_chains(self) -> torch.Tensor | None:
        """The persistent chains ``(n_chains, *event_shape)``, or ``None`` before the first call."""
        return self.chains if self.chains.numel() else None

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        """Advance the chains ``k`` steps under ``model`` and return the contrastive loss.

        Args:
            model: The energy being trained.
            x: A data batch ``(B, *event_shape)``.
        """
        x = check_points("x", x)
        generator = self._generator_for(x)
        if self.chains.numel() == 0:
            low, high = x.detach().amin(0), x.detach().amax(0)
            u = torch.rand((self.n_chains, *x.shape[1:]), generator=generator, dtype=x.dtype,
                           device=x.device)
            self.chains = low + (high - low) * u
        elif self.chains.shape[1:] != x.shape[1:]:
            raise ValueError(f"x has event shape {tuple(x.shape[1:])} but the chains hold "
                             f"{tuple(self.chains.shape[1:])}")
        state = self.sampler.init(model, self.chains.to(x.dtype))
        for _ in range(self.k):
            state, _ = self.sampler.step(model, state, generator)
        self.chains = state.x.detach().to(self.chains.dtype)
        negatives = self.chains.to(x.dtype)
        e_data, e_neg = model(x), model(negatives)
        loss = e_data.mean() - e_neg.mean()
        loss = loss + self.alpha * (e_data.pow(2).mean() + e_neg.pow(2).mean())
        return LossOutput(loss=loss, negatives=negatives,
                          metrics={"energy_data": e_data.mean().detach(),
                                   "energy_negatives": e_neg.mean().detach()})

    def _generator_for(self, x: torch.Tensor) -> torch.Generator:
        # The trainer's generator, else a private one seeded from the OS: never torch's global
        if self.generator is None:
            private = torch.Generator(device=x.device)
            private.seed()
            self.set_generator(private)
        return self.generator

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # The chains are shaped on the first call: take the saved shape before torch copies.
        saved = state_dict.get(prefix + "chains")
        if isinstance(saved, torch.Tensor) and saved.shape != self.chains.shape:
            self.chains = torch.empty_like(saved, device=self.chains.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
