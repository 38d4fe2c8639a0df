"""Contrastive divergence and its persistent and tempered variants.

Every loss here minimises ``mean E(x+) - mean E(x-)``, the maximum-likelihood gradient
estimate whose negatives ``x-`` come from a sampler run on the current model, plus an optional
energy-magnitude penalty ``alpha * (mean E(x+)^2 + mean E(x-)^2)`` (Du & Mordatch 2019) that
keeps the energies from drifting. For a model with a Gaussian base (``model.base_energy()``)
the penalty applies to the learned part ``E - E_base`` only: the base is fixed, and on images
its energies are of the order of the dimension, which the penalty would otherwise fight.
Negatives are detached: no gradient flows through the chain.
"""

from __future__ import annotations

from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.loss import LossOutput
from ebmcore.sampler import BACKENDS
from ebmcore.validation import check_energy_output, check_int, check_positive
from ebmcore_losses._common import (
    StochasticLoss,
    check_bounds,
    draw_replayed,
    load_lazy_buffers,
    noise_box,
    resolve_sampler,
    uniform_noise,
)

_INITS = ("data", "noise", "base")


def fixed_energy(model: Energy, x: torch.Tensor) -> torch.Tensor | None:
    """The part of ``model``'s energy at ``x`` that training does not learn, or ``None``.

    That is the Gaussian base (``model.base_energy()``) or, failing one, the confining wall
    a built-in neural energy carries as ``model.confinement`` (fitted to the data before the
    first step, then fixed). The energy-magnitude penalty leaves it out.
    """
    base = model.base_energy()
    if base is not None:
        return base(x)
    wall = getattr(model, "confinement", None)
    return wall(x) if isinstance(wall, torch.nn.Module) else None


def contrastive_output(model: Energy, x: torch.Tensor, negatives: torch.Tensor,
                       alpha: float) -> LossOutput:
    """Return the contrastive loss of ``model`` with positives ``x`` and fixed negatives.

    Positives and negatives go through the model in one batch (one forward, one backward).

    Args:
        model: The energy being trained.
        x: The data batch (positives).
        negatives: The negative samples; detached here.
        alpha: Weight of the energy-magnitude penalty (on ``E - E_base`` for a model with
            a Gaussian base).
    """
    n = x.shape[0]
    both = torch.cat([x, negatives.detach().to(x.dtype)])
    e = check_energy_output(model, both, model(both))
    e_pos, e_neg = e[:n], e[n:]
    mean_pos, mean_neg = e_pos.mean(), e_neg.mean()
    loss = mean_pos - mean_neg
    if alpha > 0:
        fixed = fixed_energy(model, both)
        learned = e if fixed is None else e - fixed.detach().to(e.dtype)
        loss = loss + alpha * (learned[:n].pow(2).mean() + learned[n:].pow(2).mean())
    metrics = {"energy_pos": mean_pos.detach(), "energy_neg": mean_neg.detach()}
    return LossOutput(loss=loss, metrics=metrics, negatives=negatives.detach())


class ContrastiveDivergence(StochasticLoss):
    """Contrastive divergence: negatives from ``k`` sampler steps started at data or noise.

    Args:
        sampler: Sampler name (e.g. ``"langevin"``, ``"mala"``) or an ``ebmcore.Sampler``.
        k: Sampler steps per training step.
        init: ``"data"`` starts the chains at the data batch (CD-k, Hinton 2002);
            ``"noise"`` starts them from uniform noise (short-run MCMC, Nijkamp et al. 2019);
            ``"base"`` from exact draws of the model's Gaussian base
            (``model.base_energy()``, e.g. ``conv`` with ``confine="gaussian"``): the model's
            own distribution before training, and its nearest exact start after.
        sampler_params: Parameters for a sampler given by name; ``None`` gives Langevin step
            size 0.01 and noise scale 1.
        alpha: Weight of the energy-magnitude penalty ``E(x+)^2 + E(x-)^2`` (0 disables it).
            0.1, as for pcd: with 0 the energies ran away on rings (data energies of 2.8e7
            after 2,000 steps; docs/training-results.md).
        noise_bounds: ``(low, high)`` of the uniform start noise in every dimension; ``None``
            uses the first batch's per-dimension range widened by ``noise_margin`` of that
            range on each side.
        generator: Source of randomness (the trainer sets its own with ``set_generator``).
        backend: The sampler backend the chains run on (see :meth:`ebmcore.Sampler.sample`);
            ``Trainer(compile=True)`` sets ``"compiled"``.
        noise_margin: How far the start noise's box reaches past the first batch's range, as
            a fraction of it, when ``noise_bounds`` is ``None``.
    """

    def __init__(self, sampler: Any = "langevin", k: int = 20, init: str = "data",
                 sampler_params: dict[str, Any] | None = None, alpha: float = 0.1,
                 noise_bounds: tuple[float, float] | None = None,
                 generator: torch.Generator | None = None, backend: str = "auto",
                 noise_margin: float = 0.25) -> None:
        super().__init__(generator)
        self.sampler = resolve_sampler(sampler, sampler_params)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got "
                             f"{backend!r}")
        self.backend = backend
        self.k = check_int("k", k, minimum=1)
        if init not in _INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, _INITS))}, got {init!r}")
        self.init = init
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.noise_bounds = check_bounds(noise_bounds)
        self.noise_margin = check_positive("noise_margin", noise_margin, allow_zero=True)
        # The noise box is fixed by the first batch and saved, so a resumed run draws alike.
        self.register_buffer("noise_low", torch.empty(0))
        self.register_buffer("noise_high", torch.empty(0))

    def use_compiled(self) -> None:
        """Run the negative chains on the sampler's compiled backend (``Trainer(compile=True)``).

        Raises:
            ValueError: When the sampler has no compiled backend.
        """
        if not self.sampler.supports_compiled:
            raise ValueError(f"compile=True needs a sampler with a compiled backend "
                             f"(langevin, mala, hmc, underdamped_langevin, and "
                             f"parallel_tempering over one of these); "
                             f"{type(self.sampler).__name__} has none")
        self.backend = "compiled"

    # -- state -----------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        """Return the sampler's schedules so they travel in ``state_dict``."""
        return {"sampler": self.sampler.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` returned."""
        self.sampler.load_state_dict(state.get("sampler", {}))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        load_lazy_buffers(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- negatives -------------------------------------------------------------------------

    def _noise(self, n: int, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.noise_low.numel() == 0:
            low, high = noise_box(x, self.noise_bounds, self.noise_margin)
            self.noise_low, self.noise_high = low, high
        elif self.noise_low.shape != x.shape[1:]:
            raise ValueError(f"x has event shape {tuple(x.shape[1:])} but the loss's noise box "
                             f"was fitted to event shape {tuple(self.noise_low.shape)}")
        return uniform_noise(n, self.noise_low.to(x), self.noise_high.to(x), generator)

    def _fresh(self, model: Energy, n: int, x: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
        """``n`` chain starts away from the data: uniform noise or the model's base."""
        if self.init != "base":
            return self._noise(n, x, generator)
        base = model.base_energy()
        if base is None:
            raise ValueError(f"init='base' needs a model with a Gaussian base (base_energy()), "
                             f"such as conv with confine='gaussian'; {type(model).__name__} "
                             f"has none")
        return base.sample(n, generator).to(x)

    def _run_chains(self, model: Energy, x0: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        result = self.sampler.sample(model, x0, self.k, generator=generator,
                                     backend=self.backend)
        return result.samples.detach()

    def negatives(self, model: Energy, x: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
        """Draw one negative per data point."""
        x0 = (x.detach().clone() if self.init == "data"
              else self._fresh(model, x.shape[0], x, generator))
        return self._run_chains(model, x0, generator)

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:
        """Return the contrastive loss of ``model`` on the data batch ``x``.

        Args:
            model: The energy being trained.
            x: A data batch ``(B, *event_shape)``.
        """
        model, x, generator = self.prepare(model, x)
        negatives = self.negatives(model, x, generator)
        return contrastive_output(model, x, negatives, self.alpha)


class PersistentContrastiveDivergence(ContrastiveDivergence):
    """Persistent CD with a replay buffer (Tieleman 2008; Du & Mordatch 2019).

    Each step draws chains from a buffer of past negatives, restarts each with probability
    ``reinit_prob`` (from uniform noise, or from the data batch with ``init="data"``), runs
    ``k`` sampler steps and writes the chains back. The buffer is a registered buffer, so it
    travels in ``state_dict`` and checkpoints.

    Args:
        sampler: Sampler name (e.g. ``"langevin"``) or an ``ebmcore.Sampler`` instance.
        k: Sampler steps per training step.
        buffer_size: Number of persistent chains kept.
        reinit_prob: Probability that a drawn chain restarts before it is advanced.
        init: Where chains start and restart: ``"noise"`` (uniform), ``"data"`` or ``"base"``
            (the model's Gaussian base; see :class:`ContrastiveDivergence`).
        sampler_params: Parameters for a sampler given by name; ``None`` gives Langevin step
            size 0.01 and noise scale 1 (tuned on the 2-D toy data sets).
        alpha: Weight of the energy-magnitude penalty ``E(x+)^2 + E(x-)^2``.
        noise_bounds: ``(low, high)`` of the uniform noise in every dimension; ``None`` uses
            the first batch's per-dimension range widened by ``noise_margin`` of it on each
            side.
        n_negatives: Chains advanced per step; ``None`` uses the batch size.
        generator: Source of randomness (the trainer sets its own with ``set_generator``).
        backend: The sampler backend the chains run on (``Trainer(compile=True)`` sets
            ``"compiled"``).
        noise_margin: 0 by default: restarts fall within the data's range, where the model's
            wall is zero. Past it the wall already holds the density down, and chains
            restarted there settle at the data's edge and push its energy up (checkerboard
            gap 0.32 and 0.44 with a margin of a quarter; docs/training-results.md).
    """

    # the replay buffer's rows are chains: each rank of a distributed run keeps its share
    chain_counts = ("buffer_size", "n_negatives")
    sharded_state = ("buffer",)

    def __init__(self, sampler: Any = "langevin", k: int = 20, buffer_size: int = 10000,
                 reinit_prob: float = 0.05, init: str = "noise",
                 sampler_params: dict[str, Any] | None = None, alpha: float = 0.1,
                 noise_bounds: tuple[float, float] | None = None,
                 n_negatives: int | None = None,
                 generator: torch.Generator | None = None, backend: str = "auto",
                 noise_margin: float = 0.0) -> None:
        super().__init__(backend=backend, sampler=sampler, k=k, init=init,
                         sampler_params=sampler_params, alpha=alpha, noise_bounds=noise_bounds,
                         generator=generator, noise_margin=noise_margin)
        self.buffer_size = check_int("buffer_size", buffer_size, minimum=1)
        self.reinit_prob = check_positive("reinit_prob", reinit_prob, allow_zero=True)
        if self.reinit_prob > 1:
            raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob}")
        self.n_negatives = (None if n_negatives is None
                            else check_int("n_negatives", n_negatives, minimum=1))
        self.register_buffer("buffer", torch.empty(0))

    def persistent_chains(self) -> torch.Tensor | None:
        """The replay buffer's chains, or ``None`` before the first step fills it."""
        return self.buffer if self.buffer.numel() else None

    def _restart_points(self, model: Energy, n: int, x: torch.Tensor,
                        generator: torch.Generator) -> torch.Tensor:
        if self.init != "data":
            return self._fresh(model, n, x, generator)
        rows = torch.randint(x.shape[0], (n,), generator=generator, device=x.device)
        return x.detach()[rows]

    def negatives(self, model: Energy, x: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
        """Advance ``n_negatives`` chains drawn from the replay buffer and store them back."""
        if self.buffer.numel() == 0:
            self.buffer = self._restart_points(model, self.buffer_size, x, generator)
        x0, idx = draw_replayed(self.buffer, self.n_negatives or x.shape[0], self.reinit_prob,
                                lambda n: self._restart_points(model, n, x, generator), x,
                                generator)
        negatives = self._run_chains(model, x0, generator)
        self.buffer[idx] = negatives.to(self.buffer.dtype)
        return negatives


class TemperedContrastiveDivergence(ContrastiveDivergence):
    """Contrastive divergence whose negatives come from parallel tempering.

    The cold replica of a replica-exchange sampler supplies the negatives; hot replicas cross
    between modes that a single chain would need many steps to reach.

    Args:
        k: Parallel-tempering sweeps per training step.
        init: ``"data"`` or ``"noise"`` start for every replica.
        sampler_params: Parameters of the ``parallel_tempering`` sampler; ``None`` uses
            Langevin (step size 0.01) at temperatures ``(1, 2, 4, 8)``.
        sampler: A configured parallel-tempering sampler instance, or a sampler name.
        alpha: Weight of the energy-magnitude penalty ``E(x+)^2 + E(x-)^2`` (0.1, as for cd
            and pcd: with 0 the energies ran away on rings).
        noise_bounds: ``(low, high)`` of the uniform start noise in every dimension.
        generator: Source of randomness (the trainer sets its own with ``set_generator``).
    """

    def __init__(self, k: int = 10, init: str = "data",
                 sampler_params: dict[str, Any] | None = None,
                 sampler: Any = "parallel_tempering", alpha: float = 0.1,
                 noise_bounds: tuple[float, float] | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(sampler=sampler, k=k, init=init, sampler_params=sampler_params,
                         alpha=alpha, noise_bounds=noise_bounds, generator=generator)
