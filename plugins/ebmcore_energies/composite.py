"""Energies built from other energies or from a plain callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ebmcore.energy import Energy, as_energy
from ebmcore.validation import check_energy_output, check_points

from ._base import real


def _event_shape_arg(event_shape: Any) -> tuple[int, ...] | None:
    if event_shape is None:
        return None
    if isinstance(event_shape, int) and not isinstance(event_shape, bool):
        event_shape = (event_shape,)
    try:
        shape = tuple(event_shape)
    except TypeError as exc:
        raise TypeError(f"event_shape must be a tuple of positive integers, got "
                        f"{type(event_shape).__name__}") from exc
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                            for s in shape):
        raise ValueError(f"event_shape must be a non-empty tuple of positive integers, "
                         f"got {event_shape!r}")
    return shape


class SumEnergy(Energy):
    """Sum of energies ``E(x) = Σ_j E_j(x)``: the product of experts ``∏_j exp(-E_j)``.

    ``grad`` and ``energy_and_grad`` add the parts' own (closed-form where they have one).

    Args:
        energies: A non-empty list of :class:`ebmcore.Energy` instances over one event shape.
    """

    def __init__(self, energies: Sequence[Energy]) -> None:
        super().__init__()
        if isinstance(energies, Energy) or not isinstance(energies, Sequence):
            raise TypeError(f"energies must be a list of ebmcore.Energy instances, got "
                            f"{type(energies).__name__}")
        if len(energies) == 0:
            raise ValueError("energies must hold at least one energy, got an empty list")
        parts = []
        for i, e in enumerate(energies):
            try:
                parts.append(as_energy(e))
            except TypeError as exc:
                raise TypeError(f"energies[{i}]: {exc}") from None
        shapes = {tuple(e.event_shape) for e in parts if e.event_shape is not None}
        if len(shapes) > 1:
            raise ValueError(f"energies must share one event shape, got {sorted(shapes)}")
        self.parts = nn.ModuleList(parts)
        self.event_shape = shapes.pop() if shapes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``Σ_j E_j(x)``."""
        total = self.parts[0](x)
        for part in self.parts[1:]:
            total = total + part(x)
        return total

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``Σ_j ∂E_j/∂x``."""
        total = self.parts[0].grad(x)
        for part in self.parts[1:]:
            total = total + part.grad(x)
        return total

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``Σ_j E_j(x)`` and ``Σ_j ∂E_j/∂x``."""
        e, g = self.parts[0].energy_and_grad(x)
        for part in self.parts[1:]:
            e_j, g_j = part.energy_and_grad(x)
            e, g = e + e_j, g + g_j
        return e, g


class TemperedEnergy(Energy):
    """Tempered energy ``E(x) / T``: flatter for ``T > 1``, sharper for ``T < 1``.

    Args:
        energy: The :class:`ebmcore.Energy` to temper.
        temperature: The temperature ``T`` (positive).
    """

    def __init__(self, energy: Energy, temperature: float) -> None:
        super().__init__()
        self.base = as_energy(energy)
        self.temperature = real("temperature", temperature, positive=True)
        self.event_shape = self.base.event_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``E(x) / T``."""
        return self.base(x) / self.temperature

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``∂E/∂x / T``."""
        return self.base.grad(x) / self.temperature

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``E(x) / T`` and ``∂E/∂x / T``."""
        e, g = self.base.energy_and_grad(x)
        return e / self.temperature, g / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, {super().extra_repr()}"


class CallableEnergy(Energy):
    """An energy from any Python callable ``fn: (B, *event_shape) -> (B,)``; autograd gradient.

    Tensors captured by ``fn`` are not buffers of this module, so ``.to()`` does not move them.

    Args:
        fn: The energy function, differentiable with torch operations.
        event_shape: The shape of one point, checked on every call; ``None`` accepts any.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor],
                 event_shape: Any = None) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.event_shape = _event_shape_arg(event_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``fn(x)`` after checking the batch and the output shape."""
        x = check_points("x", x, self.event_shape, finite=False)
        return check_energy_output(self, x, self.fn(x))

    def extra_repr(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"fn={name}, {super().extra_repr()}"
