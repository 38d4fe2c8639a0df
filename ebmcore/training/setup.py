"""Building a trainer's parts from what the user passed: the loss, the optimiser, flags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ebmcore.loss import Loss


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` after checking it is ``True`` or ``False``.

    Raises:
        TypeError: Naming ``name`` when it is anything else.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def resolve_loss(loss: Any) -> Loss:
    """Return ``loss`` as a :class:`~ebmcore.Loss`: an instance, or one created by name.

    Raises:
        TypeError: When ``loss`` is neither.
    """
    if isinstance(loss, str):
        import ebmcore

        loss = ebmcore.create("loss", loss)
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be an ebmcore.Loss or a loss name, got "
                        f"{type(loss).__name__}")
    return loss


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU when it has neither)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


#: Devices on which torch's fused Adam runs (one kernel per parameter for the whole update).
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def fused_adam_fits(params: Sequence[torch.Tensor]) -> bool:
    """Whether the default Adam can be torch's fused implementation for ``params``: every
    parameter floating-point, on a CPU or CUDA device.

    The fused update is the same algorithm as the per-tensor one (to rounding: the two
    differ by about 1e-8 after ten steps) in one kernel per parameter instead of a dozen;
    on the CPU it took 160 µs against 490 µs per step for the 3 x 256 ``mlp_field``
    (benchmarks/flows.py), about 6 % of a flow-matching step. A checkpoint keeps the choice
    (the optimiser's state holds it), so a resumed run updates as the run that wrote it.
    """
    return all(p.is_floating_point() and p.device.type in FUSED_ADAM_DEVICES for p in params)


def build_optimizer(optimizer: Any, params: Sequence[torch.Tensor],
                    lr: float) -> torch.optim.Optimizer:
    """Return the optimiser a trainer steps.

    Args:
        optimizer: ``None`` for Adam over ``params`` at ``lr`` (torch's fused implementation
            where :func:`fused_adam_fits`); a ``torch.optim.Optimizer``
            (used as it is); or a callable that takes ``params`` and returns one.
        params: The trainable parameters of the model and the loss.
        lr: The default Adam's learning rate.

    Raises:
        TypeError: When ``optimizer`` is none of these, or the callable returns something
            else.
        ValueError: When the default Adam has no parameters to train.
    """
    if optimizer is None:
        if not params:
            raise ValueError("the model and the loss have no trainable parameters")
        return torch.optim.Adam(params, lr=lr, fused=True if fused_adam_fits(params) else None)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        built = optimizer(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError(f"the optimizer factory must return a torch.optim.Optimizer, "
                            f"got {type(built).__name__}")
        return built
    raise TypeError(f"optimizer must be None, a torch.optim.Optimizer or a callable "
                    f"returning one, got {type(optimizer).__name__}")
