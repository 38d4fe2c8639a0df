"""The standard multilayer-perceptron energy for vector data."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from ebmcore.component import normalize_name
from ebmcore.energy import Energy
from ebmcore.validation import check_int
from ebmcore_models._common import (
    check_flag,
    check_input,
    check_widths,
    make_activation,
    maybe_spectral_norm,
)


class MLPEnergy(Energy):
    """A multilayer perceptron ``R^dim -> R`` used as an energy ``E(x)``.

    Layers are ``Linear(dim, h1), act, ..., Linear(hk, 1)``; the output is squeezed to
    ``(B,)``. The gradient comes from autograd. The forward pass has no data-dependent
    control flow, so ``torch.compile(model, fullgraph=True)`` traces it whole.

    Args:
        dim: Size of each input vector; the event shape is ``(dim,)``.
        hidden: Widths of the hidden layers; empty gives a linear energy.
        activation: One of ``silu``, ``relu``, ``elu``, ``gelu``, ``tanh``, ``softplus``,
            ``leaky_relu`` (torch's default settings).
        spectral_norm: Spectrally normalise every Linear weight (a common way to keep EBM
            training stable by bounding the network's Lipschitz constant).
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128), activation: str = "silu",
                 spectral_norm: bool = False) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.hidden = check_widths("hidden", hidden, allow_empty=True)
        make_activation(activation)  # validate before building anything
        self.activation = normalize_name(activation)
        self.spectral_norm = check_flag("spectral_norm", spectral_norm)
        self.event_shape = (self.dim,)
        widths = (self.dim, *self.hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(widths):
            layers += [maybe_spectral_norm(nn.Linear(fan_in, fan_out), self.spectral_norm),
                       make_activation(activation)]
        layers.append(maybe_spectral_norm(nn.Linear(widths[-1], 1), self.spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, dim)``."""
        check_input(x, self.event_shape)
        return self.net(x).squeeze(-1)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden={self.hidden}, activation={self.activation!r}, "
                f"spectral_norm={self.spectral_norm}")
