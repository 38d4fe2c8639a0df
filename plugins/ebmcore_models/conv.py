"""A small convolutional energy for images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    confinement_kind,
    make_activation,
    make_confinement,
    maybe_spectral_norm,
)


def _halved(size: int) -> int:
    """Spatial size after a 3×3 convolution with stride 2 and padding 1."""
    return (size - 1) // 2 + 1


class ConvEnergy(ConfinedEnergy):
    """A convolutional network ``(C, H, W) -> R`` used as an energy ``E(x)``.

    The first 3×3 convolution keeps the resolution; each further one halves it (stride 2).
    The feature map is flattened (its size computed from ``image_size``, so the layout of
    each pixel is kept) and a Linear layer gives the energy. There is no batch norm, so
    each image's energy is independent of the rest of the batch, as an energy must be.
    With the defaults a 28×28 image ends as 128×7×7 and a 32×32 one as 128×8×8.

    By default the network is a correction to the data's full-covariance Gaussian
    (:class:`ebmcore_models.gaussian_base.GaussianBase`): ``E = f + ½ |W (x - μ)|²``, so
    ``exp(-E)`` is a density whatever the weights, an untrained model is the Gaussian, and
    :meth:`base_energy` gives annealed importance sampling its exact start. A wall (the
    vector models' default) leaves a flat ball around the data, which in an image's many
    dimensions holds a volume no sampler or annealing path crosses. The trainer fits either
    to the data before the first step.

    Args:
        in_channels: Number of image channels ``C`` (default: ``event_shape[0]``, else 1).
        image_size: Height and width of the images, one int for square images or ``(H, W)``
            (default: ``event_shape[1:]``, else 28).
        channels: Output channels of each convolution.
        activation: One of ``silu``, ``relu``, ``elu``, ``gelu``, ``tanh``, ``softplus``,
            ``leaky_relu`` (torch's default settings).
        spectral_norm: Spectrally normalise every convolution and Linear weight.
        confine: The confining term: ``"gaussian"`` (the default), ``True`` or ``"wall"`` for
            the wall, ``False`` or ``"none"`` for a bare network (which need not be a density).
        wall_width: Width of the wall as a multiple of the data's standard deviation.
        event_shape: The images' shape ``(C, H, W)``, which a run fills in from its data set
            (the descriptor declares ``data_shape="event_shape"``); ``in_channels`` and
            ``image_size``, when also given, must agree with it.
    """

    def __init__(self, in_channels: int | None = None,
                 image_size: int | Sequence[int] | None = None,
                 channels: Sequence[int] = (32, 64, 128), activation: str = "silu",
                 spectral_norm: bool = False, confine: bool | str = "gaussian",
                 wall_width: float = 0.25, event_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        in_channels, image_size = _image_geometry(in_channels, image_size, event_shape)
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        if isinstance(image_size, int) and not isinstance(image_size, bool):
            height = width = check_int("image_size", image_size, minimum=1)
        elif isinstance(image_size, Sequence) and len(image_size) == 2:
            height = check_int("image_size[0]", image_size[0], minimum=1)
            width = check_int("image_size[1]", image_size[1], minimum=1)
        else:
            raise TypeError(f"image_size must be an int or a pair (H, W), got {image_size!r}")
        self.channels = check_widths("channels", channels, allow_empty=False)
        make_activation(activation)  # validate before building anything
        self.activation = normalize_name(activation)
        self.spectral_norm = check_flag("spectral_norm", spectral_norm)
        self.event_shape = (self.in_channels, height, width)

        layers: list[nn.Module] = []
        fan_in = self.in_channels
        for i, fan_out in enumerate(self.channels):
            stride = 1 if i == 0 else 2
            conv = nn.Conv2d(fan_in, fan_out, kernel_size=3, stride=stride, padding=1)
            layers += [maybe_spectral_norm(conv, self.spectral_norm), make_activation(activation)]
            if stride == 2:
                height, width = _halved(height), _halved(width)
            fan_in = fan_out
        layers.append(nn.Flatten())
        head = nn.Linear(fan_in * height * width, 1)
        layers.append(maybe_spectral_norm(head, self.spectral_norm))
        self.net = nn.Sequential(*layers)
        self._confine = confine
        self.confinement = make_confinement(self.event_shape, confine, wall_width)
        self.normalisable = self.confinement is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, C, H, W)``."""
        check_input(x, self.event_shape)
        return confined(self.net(x).squeeze(-1), x, self.confinement)

    def extra_repr(self) -> str:
        return (f"event_shape={self.event_shape}, channels={self.channels}, "
                f"activation={self.activation!r}, spectral_norm={self.spectral_norm}, "
                f"confine={confinement_kind(self._confine)!r}")


def _image_geometry(in_channels: Any, image_size: Any, event_shape: Any) -> tuple[Any, Any]:
    """Return ``(in_channels, image_size)`` from the arguments, ``event_shape`` filling what
    is not given and checked against what is (1 channel of 28×28 when nothing is given)."""
    if event_shape is None:
        return (1 if in_channels is None else in_channels,
                28 if image_size is None else image_size)
    if isinstance(event_shape, (str, bytes)) or not isinstance(event_shape, Sequence) \
            or len(event_shape) != 3:
        raise TypeError(f"event_shape must be (C, H, W), got {event_shape!r}")
    channels = check_int("event_shape[0]", event_shape[0], minimum=1)
    size = [check_int(f"event_shape[{i}]", event_shape[i], minimum=1) for i in (1, 2)]
    if in_channels is not None and in_channels != channels:
        raise ValueError(f"in_channels={in_channels!r} disagrees with event_shape="
                         f"{tuple(event_shape)!r}")
    if image_size is not None:
        given = [image_size] * 2 if isinstance(image_size, int) else list(image_size)
        if given != size:
            raise ValueError(f"image_size={image_size!r} disagrees with event_shape="
                             f"{tuple(event_shape)!r}")
    return channels, size
