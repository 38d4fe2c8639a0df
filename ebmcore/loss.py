"""The loss contract: ``loss(model, x) -> LossOutput``, and what the trainer may ask of a loss.

Besides ``forward``, a :class:`Loss` declares every capability the trainer and the
distributed code use, each with a default that suits a loss without chains or randomness:
:meth:`Loss.set_generator` (seeding), :attr:`Loss.sampler` (the sampler its negatives come
from), :attr:`Loss.chain_counts` and :attr:`Loss.sharded_state` (persistent chains split over
ranks), :meth:`Loss.use_compiled` (the compiled chain backend) and
:meth:`Loss.persistent_chains` (the chains a run plots). Nothing is probed with ``getattr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ebmcore.energy import Energy

if TYPE_CHECKING:
    from ebmcore.sampler import Sampler


@dataclass
class LossOutput:
    """What a loss returns.

    Attributes:
        loss: The scalar to minimise.
        metrics: Named scalars worth logging (floats or 0-d tensors).
        negatives: The negative samples the loss drew, when it draws any.
    """

    loss: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    negatives: torch.Tensor | None = None


class Loss(nn.Module):
    """Base class of every training objective.

    Subclasses implement ``forward(model, x) -> LossOutput``; a loss that keeps state (a replay
    buffer) registers it as buffers so that it travels in ``state_dict``.

    Attributes:
        sampler: The sampler the loss draws its negatives with (``None``: it draws none).
        chain_counts: Names of integer attributes that count chains over all ranks; in a
            distributed run the trainer sets each to this rank's share before training
            (an attribute that is ``None`` means "as many as the batch" and is left alone).
        sharded_state: ``state_dict`` entries (matched by the last dotted part of the key)
            whose rows are per-chain state: gathered over the ranks into one tensor in a
            checkpoint and split again over the ranks that resume it.
        generator: The generator set by :meth:`set_generator` (``None`` until then).
    """

    sampler: Sampler | None = None
    chain_counts: ClassVar[tuple[str, ...]] = ()
    sharded_state: ClassVar[tuple[str, ...]] = ()
    generator: torch.Generator | None = None

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:  # pragma: no cover
        """Return the loss of ``model`` on the data batch ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(model, x)")

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Use ``generator`` for every later random draw of the loss.

        The :class:`~ebmcore.training.Trainer` always calls this with a generator it seeds
        and checkpoints, so runs repeat and resume exactly. The default stores it as
        :attr:`generator`; a loss that draws random numbers draws them from it.

        Args:
            generator: A ``torch.Generator``, or ``None`` to forget the one set before.
        """
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        self.generator = generator

    def use_compiled(self) -> None:
        """Run the loss's negative chains on the sampler's compiled backend.

        ``Trainer(compile=True)`` calls this. The default raises: a loss without chains has
        nothing to compile.

        Raises:
            ValueError: When the loss runs no chains, or its sampler has no compiled backend.
        """
        raise ValueError(f"compile=True compiles the loss's negative chains, and "
                         f"{type(self).__name__} runs none; use a contrastive loss (cd, pcd, "
                         f"pt_cd) or compile=False")

    def flow_settings(self) -> dict[str, Any]:
        """How a field this loss trained is read when sampled or evaluated as a flow.

        Runs pass these keywords to the ``flow`` sampler (and the likelihood): ``prediction``
        (what the field outputs), ``interpolant`` (the path, a name or an instance) and
        ``time_invariant`` (the field takes no time). The default, ``{}``, keeps the flow's
        own defaults (a velocity on the linear path); a loss that trains a field in another
        reading says which.
        """
        return {}

    def persistent_chains(self) -> torch.Tensor | None:
        """The loss's persistent negative chains (a replay buffer), or ``None``.

        Runs draw them (the replay pictures of an image run); ``None`` for a loss that keeps
        no chains between steps, or whose chains are not started yet.
        """
        return None
