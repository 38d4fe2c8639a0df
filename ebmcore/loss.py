"""The loss contract: ``loss(model, x) -> LossOutput``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ebmcore.energy import Energy


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
    """

    def forward(self, model: Energy, x: torch.Tensor) -> LossOutput:  # pragma: no cover
        """Return the loss of ``model`` on the data batch ``x``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(model, x)")
