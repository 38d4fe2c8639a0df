"""Argument checks shared by the contracts: each raises early and names the argument."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import torch


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is a finite positive number."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {bound} number, got {value!r}")
    return value


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` after checking it is an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_points(name: str, x: Any, event_shape: Sequence[int] | None = None, *,
                 finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a floating-point batch ``(B, *event_shape)`` of finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} must be a batch of shape (B, *event_shape) with at least 2 dimensions, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(x.shape)}")
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{name} has event shape {tuple(x.shape[1:])} but the energy expects "
            f"{tuple(event_shape)} (full shape (B, {', '.join(map(str, event_shape))}))"
        )
    if finite and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise ValueError(f"{name} contains non-finite values (in {bad} of {x.shape[0]} rows)")
    return x


def check_energy_output(energy: Any, x: torch.Tensor, e: Any) -> torch.Tensor:
    """Check that an energy returned one value per point of ``x``."""
    if not isinstance(e, torch.Tensor) or e.shape != (x.shape[0],):
        got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        raise ValueError(
            f"{type(energy).__name__} must return energies of shape (B,) = ({x.shape[0]},) "
            f"for input of shape {tuple(x.shape)}, got {got}"
        )
    return e


def _device_index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.current_device()
    return 0


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """Whether ``a`` and ``b`` name the same device, compared by meaning, not spelling.

    ``"cuda"`` (no index) is the current CUDA device, so it equals ``"cuda:0"`` when device
    0 is current (``torch.Generator(device="cuda").device`` reads ``cuda`` while a tensor
    made there reads ``cuda:0``). Without CUDA an index-less device counts as index 0, and
    ``"cpu"`` equals ``"cpu"`` whatever its index. Devices of different types differ.

    Args:
        a: A device or its name.
        b: A device or its name.
    """
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    return a.type == "cpu" or _device_index(a) == _device_index(b)
