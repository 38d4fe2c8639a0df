"""An exponential moving average of a model's weights, updated after every step."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """An exponential moving average of a model's parameters (buffers are copied).

    Args:
        model: The model being trained; the average starts as a copy of it.
        decay: The weight of the old average at each update, in ``(0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False)
        # the parameters themselves: the update runs under no_grad, so it needs no detached
        # copies of the lists per step (one in-place lerp over the lists)
        self._src = list(model.parameters())
        self._dst = list(self.model.parameters())
        self._src_buffers = list(model.buffers())
        self._dst_buffers = list(self.model.buffers())

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights."""
        torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay)
        if self._dst_buffers:
            torch._foreach_copy_(self._dst_buffers, self._src_buffers)
