"""The standard multilayer-perceptron energy for vector data."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from ebmcore.component import normalize_name
from ebmcore.validation import check_int
from ebmcore_models._common import (
    ConfinedEnergy,
    check_flag,
    check_input,
    check_widths,
    confined,
    make_activation,
    make_confinement,
    maybe_spectral_norm,
)


class MLPEnergy(ConfinedEnergy):
    """A multilayer perceptron ``R^dim -> R`` used as an energy ``E(x)``.

    Layers are ``Linear(dim, h1), act, ..., Linear(hk, 1)``; the output is squeezed to
    ``(B,)``. With ``confine`` (the default) a confining wall is added (see
    :class:`ebmcore_models.confinement.Confinement`), so ``exp(-E)`` is a density whatever
    the weights; the trainer fits the wall to the data before the first step, and
    :meth:`fit_confinement` does it by hand. The gradient comes from autograd. The forward
    pass has no data-dependent control flow, so ``torch.compile(model, fullgraph=True)``
    traces it whole.

    Args:
        dim: Size of each input vector; the event shape is ``(dim,)``.
        hidden: Widths of the hidden layers; empty gives a linear energy. Four layers of
            128 are the default: with two, pcd misses its goals on ``checkerboard`` and
            ``rings`` and cd diverges on ``rings`` (docs/training-results.md). Exact and
            sliced score matching do better with two (their run recipe, declared on the
            losses' descriptors in ``ebmcore_losses``, says so).
        activation: One of ``silu``, ``relu``, ``elu``, ``gelu``, ``tanh``, ``softplus``,
            ``leaky_relu`` (torch's default settings).
        spectral_norm: Spectrally normalise every Linear weight (a common way to keep EBM
            training stable by bounding the network's Lipschitz constant).
        confine: The confining term: ``True`` or ``"wall"`` for the wall, ``"gaussian"`` for
            the data's full-covariance Gaussian as a base
            (:class:`ebmcore_models.gaussian_base.GaussianBase`), ``False`` or ``"none"`` for
            a bare network, which can fall without bound far from the data (then it is not a
            density).
        wall_width: Width of the wall as a multiple of the data's standard deviation.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (128, 128, 128, 128),
                 activation: str = "silu", spectral_norm: bool = False,
                 confine: bool | str = True,
                 wall_width: float = 0.25) -> None:
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
        self.confinement = make_confinement(self.event_shape, confine, wall_width)
        self.normalisable = self.confinement is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, dim)``."""
        check_input(x, self.event_shape)
        return confined(self.net(x).squeeze(-1), x, self.confinement)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, hidden={self.hidden}, activation={self.activation!r}, "
                f"spectral_norm={self.spectral_norm}, confine={self.normalisable}")
