"""What the evaluations need to know of the module they run (an energy, a classifier): where
its tensors live, and a scope in eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def placement(energy: nn.Module, default_dtype: torch.dtype = torch.float32
              ) -> tuple[torch.dtype, torch.device]:
    """Return the dtype and device of the energy's first floating tensor (parameter or
    buffer), or ``default_dtype`` on the CPU for an energy without one."""
    for tensor in [*energy.parameters(), *energy.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return default_dtype, torch.device("cpu")


@contextlib.contextmanager
def eval_mode(energy: nn.Module) -> Iterator[None]:
    """Run the block with ``energy`` in eval mode, then put its training mode back."""
    was_training = energy.training
    energy.eval()
    try:
        yield
    finally:
        energy.train(was_training)
