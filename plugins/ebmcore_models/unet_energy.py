"""A scalar image energy built on the convolutional U-Net: ``E(x)`` from ``f(x) = U(x, 0)``.

The energy losses that train the field ``-∇E`` (``energy_matching`` and explicit
``equilibrium_matching``) need an energy whose ``-∇E`` can be what a U-Net field learns
well on images. The forms here make the U-Net's own output the leading part of the field:

- ``"dot"``: ``E(x) = -<x, f(x)>``, so ``-∇E = f(x) + J_f(x)ᵀ x``;
- ``"l2"``: ``E(x) = ½ |f(x)|²``, so ``-∇E = -J_f(x)ᵀ f(x)``, zero wherever ``f`` is (a
  landscape whose minima are the U-Net's zeros).

The U-Net is :class:`ebmcore_models.fields.UNetField` called at the fixed time ``t = 0``
(the energy is time-free). By default the energy also carries the standard normal's
``½ |x|²``, the noise ``N(0, I)`` every path of those losses starts from: it is the model's
:meth:`~UNetEnergy.base_energy`, so a run starts its chains there (where the flow ``-∇E``
was trained to carry noise to data) and annealed importance sampling starts from its exact
normaliser.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ebmcore.energy import Energy
from ebmcore.evaluation.reference import ReferenceGaussian
from ebmcore_models.fields import UNetField

#: The ways the U-Net's output ``f(x)`` becomes a scalar energy.
FORMS = ("dot", "l2")


class UNetEnergy(Energy):
    """A scalar energy ``E(x)`` of images ``(C, H, W)`` made from a U-Net's output ``f(x)``.

    With ``form="dot"`` (default) ``E = -<x, f(x)>`` summed over pixels; with ``form="l2"``
    ``E = ½ |f(x)|²``; with ``base=True`` (default) ``½ |x|²`` is added, the standard
    normal energy. ``f`` is a :class:`~ebmcore_models.fields.UNetField` at ``t = 0``,
    whose last convolution starts at zero: an untrained ``"dot"`` energy is zero everywhere.
    With ``"l2"`` that start would leave the loss no gradient (``∇E = J_fᵀ f`` and its
    derivatives all vanish), so that form starts the last convolution at small random
    weights instead. The base does not confine ``-<x, f(x)>``, so ``exp(-E)`` need not be
    a density (``normalisable`` is ``False``). Each image's energy depends on that image alone
    (GroupNorm, not batch norm).

    Args:
        event_shape: The image shape ``(C, H, W)`` (a run fills it in from its data set).
        channels: Channels per U-Net level, from the full resolution down.
        form: ``"dot"`` or ``"l2"``: how ``f(x)`` becomes the energy.
        time_dim: Number of time features of the U-Net (their input is fixed at ``t = 0``).
        base: Add the standard normal energy ``½ |x|²`` and report it as
            :meth:`base_energy`; ``False`` for the U-Net's form alone.
    """

    def __init__(self, event_shape: Sequence[int], channels: Sequence[int] = (16, 32),
                 form: str = "dot", time_dim: int = 32, base: bool = True) -> None:
        super().__init__()
        if not isinstance(form, str) or form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        if not isinstance(base, bool):
            raise TypeError(f"base must be True or False, got {type(base).__name__}")
        self.form = form
        self.base = base
        self.net = UNetField(event_shape, channels=channels, time_dim=time_dim)
        self.event_shape = self.net.event_shape
        if form == "l2":
            torch.nn.init.normal_(self.net.head[-1].weight, std=1e-2)
        # the base's mean, a buffer so that it follows the model's device and dtype
        self.register_buffer("origin", torch.zeros(self.event_shape))

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's output ``f(x)`` at ``t = 0``, shaped like ``x``."""
        return self.net(x, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of images ``x`` of shape ``(B, C, H, W)``."""
        f = self.output(x).flatten(1)
        flat = x.flatten(1)
        energy = -(flat * f).sum(1) if self.form == "dot" else 0.5 * f.square().sum(1)
        return energy + 0.5 * flat.square().sum(1) if self.base else energy

    def base_energy(self) -> ReferenceGaussian | None:
        """The standard normal ``N(0, I)`` (exact samples and ``log_z``) when the energy
        carries it (``base=True``), else ``None``."""
        return ReferenceGaussian(self.origin) if self.base else None

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, form={self.form!r}, base={self.base}"
