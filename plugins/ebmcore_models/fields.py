"""Time-conditioned vector-field models: an MLP for vectors and a small U-Net for images.

Both are :class:`ebmcore.Field` s, ``v(x, t)`` with the shape of ``x``, trained by the field
losses (``flow_matching``, ``equilibrium_matching``, ``diffusion``). The time enters through
an embedding of ``t ∈ [0, 1]``: sinusoidal features at geometric frequencies (as in
transformers and DDPM) or random Fourier features (as in score SDEs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from ebmcore.component import normalize_name
from ebmcore.field import Field, expand_time
from ebmcore.validation import check_int
from ebmcore_models._common import check_input, check_widths, make_activation

#: Time embeddings selectable by name.
TIME_EMBEDDINGS = ("sinusoidal", "fourier")


class TimeEmbedding(nn.Module):
    """Features of a time ``t ∈ [0, 1]`` ``(B,) -> (B, size)``.

    ``sinusoidal``: ``sin``/``cos`` of ``1000 t`` at frequencies spaced geometrically from 1
    to 1/10000 (the transformer and DDPM embedding, on DDPM's step scale). ``fourier``:
    ``sin``/``cos`` of ``2π w t`` with fixed random ``w ~ N(0, scale²)`` (Gaussian Fourier
    features, Tancik et al. 2020; Song et al. 2021), drawn from a generator seeded with 0 so
    that a model is the same function of its state dict.

    Args:
        size: Number of features (even).
        kind: ``"sinusoidal"`` or ``"fourier"``.
        scale: Standard deviation of the Fourier frequencies.
    """

    def __init__(self, size: int, kind: str = "sinusoidal", scale: float = 16.0) -> None:
        super().__init__()
        self.size = check_int("time_dim", size, minimum=2)
        if self.size % 2:
            raise ValueError(f"time_dim must be even (sin and cos pairs), got {size}")
        if not isinstance(kind, str) or normalize_name(kind) not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding must be one of {', '.join(TIME_EMBEDDINGS)}, "
                             f"got {kind!r}")
        self.kind = normalize_name(kind)
        half = self.size // 2
        if self.kind == "sinusoidal":
            freqs = 1000.0 * torch.exp(-math.log(10000.0) * torch.arange(half) / half)
        else:
            if not isinstance(scale, (int, float)) or not scale > 0:
                raise ValueError(f"fourier_scale must be a positive number, got {scale!r}")
            gen = torch.Generator().manual_seed(0)
            freqs = 2.0 * math.pi * scale * torch.randn(half, generator=gen)
        self.register_buffer("freqs", freqs)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Return the features ``(B, size)`` of the times ``t`` ``(B,)``."""
        angles = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class MLPField(Field):
    """A multilayer perceptron ``v(x, t)`` for vectors: ``[x, embed(t)] -> v``.

    Layers are ``Linear(dim + time_dim, h1), act, ..., Linear(hk, dim)``. Inputs with more
    than one trailing dimension (images given to a vector model) are flattened and the
    output takes their shape back, so ``dim`` is the flat size of one point.

    Args:
        dim: Flat size of one point; the event shape is ``(dim,)`` (or any shape of that
            size).
        hidden: Widths of the hidden layers; three of 256 by default (the plain
            flow-matching baseline of the 2-D data sets).
        activation: One of ``silu`` (default), ``relu``, ``elu``, ``gelu``, ``tanh``,
            ``softplus``, ``leaky_relu``.
        time_embedding: ``"sinusoidal"`` (default) or ``"fourier"`` (:class:`TimeEmbedding`).
        time_dim: Number of time features.
        fourier_scale: Standard deviation of the Fourier frequencies.
        input_features: Random Fourier features of ``x`` fed beside it: ``sin`` and
            ``cos`` of ``x · w_k`` for this many fixed frequencies ``w_k ~ N(0, s² I)``
            (Tancik et al. 2020), drawn from a generator seeded with 1; ``0`` (default)
            feeds ``x`` alone. They let the MLP learn sharp detail (thin rings, square
            edges) that a plain MLP's smooth bias learns slowly.
        input_scale: ``s``, the standard deviation of those frequencies, per unit of ``x``.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (256, 256, 256),
                 activation: str = "silu", time_embedding: str = "sinusoidal",
                 time_dim: int = 64, fourier_scale: float = 16.0, input_features: int = 0,
                 input_scale: float = 4.0) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.input_features = check_int("input_features", input_features, minimum=0)
        if isinstance(input_scale, bool) or not isinstance(input_scale, (int, float)) \
                or not input_scale > 0:
            raise ValueError(f"input_scale must be a positive number, got {input_scale!r}")
        self.input_scale = float(input_scale)
        gen = torch.Generator().manual_seed(1)
        self.register_buffer("input_freqs", self.input_scale * torch.randn(
            self.dim, self.input_features, generator=gen))
        self.hidden = check_widths("hidden", hidden, allow_empty=False)
        make_activation(activation)  # validate before building anything
        self.event_shape = (self.dim,)
        self.time = TimeEmbedding(time_dim, time_embedding, fourier_scale)
        widths = (self.dim + 2 * self.input_features + self.time.size, *self.hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], self.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Return ``v(x, t)`` shaped like ``x`` ``(B, dim)`` (or ``(B, *shape)`` of size dim)."""
        if not x.is_floating_point():
            raise TypeError(f"x must have a floating-point dtype, got {x.dtype}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x must hold {self.dim} values per point (shape (B, {self.dim})),"
                             f" got shape {tuple(x.shape)}")
        parts = [flat]
        if self.input_features:
            angles = flat @ self.input_freqs.to(flat.dtype)
            parts += [torch.sin(angles), torch.cos(angles)]
        features = torch.cat([*parts, self.time(expand_time(t, x))], dim=-1)
        return self.net(features).reshape(x.shape)


class _Block(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU; the time embedding is added between."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(c_out), c_out)
        self.time = nn.Linear(t_dim, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = h + self.time(temb)[:, :, None, None]
        h = self.act(self.norm2(self.conv2(h)))
        return h + self.skip(x)


def _groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 that divides ``channels`` (GroupNorm's group count)."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class UNetField(Field):
    """A small convolutional U-Net ``v(x, t)`` for images ``(C, H, W)``.

    One residual block per level (two 3x3 convolutions, GroupNorm, SiLU) going down, a
    stride-2 convolution between levels, a middle block, and on the way up a nearest
    upsample to the skip's size, concatenation with the skip and a block. The time
    embedding passes through a small MLP and is added to every block. Odd sizes are fine
    (28 → 14 → 7 and back). Two levels of 32 and 64 channels train on the 8x8 digits in
    seconds per hundred steps on two CPU cores; 28x28 images take about ten times longer.

    Args:
        event_shape: The image shape ``(C, H, W)``.
        channels: Channels per level, from the full resolution down.
        time_embedding: ``"sinusoidal"`` (default) or ``"fourier"``.
        time_dim: Number of time features.
    """

    def __init__(self, event_shape: Sequence[int], channels: Sequence[int] = (32, 64),
                 time_embedding: str = "sinusoidal", time_dim: int = 64) -> None:
        super().__init__()
        shape = tuple(event_shape) if isinstance(event_shape, (list, tuple)) else None
        if shape is None or len(shape) != 3:
            raise ValueError(f"event_shape must be an image shape (C, H, W), got "
                             f"{event_shape!r}")
        self.event_shape = tuple(check_int(f"event_shape[{i}]", s, minimum=1)
                                 for i, s in enumerate(shape))
        self.channels = check_widths("channels", channels, allow_empty=False)
        c_img = self.event_shape[0]
        self.time = TimeEmbedding(time_dim, time_embedding)
        t_dim = 4 * self.time.size
        self.time_mlp = nn.Sequential(nn.Linear(self.time.size, t_dim), nn.SiLU(),
                                      nn.Linear(t_dim, t_dim))
        self.stem = nn.Conv2d(c_img, self.channels[0], 3, padding=1)
        self.down = nn.ModuleList(_Block(c, c, t_dim) for c in self.channels)
        self.downsample = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                        for a, b in pairwise(self.channels))
        self.middle = _Block(self.channels[-1], self.channels[-1], t_dim)
        self.up = nn.ModuleList(_Block(2 * c, c, t_dim) for c in self.channels)
        self.upsample = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1)
                                      for a, b in pairwise(self.channels))
        self.head = nn.Sequential(nn.GroupNorm(_groups(self.channels[0]), self.channels[0]),
                                  nn.SiLU(), nn.Conv2d(self.channels[0], c_img, 3, padding=1))
        # start as the zero field, so the first steps do not fight a random one
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Return ``v(x, t)`` for images ``x`` of shape ``(B, C, H, W)``."""
        check_input(x, self.event_shape)
        temb = self.time_mlp(self.time(expand_time(t, x)))
        h = self.stem(x)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, temb)
        for level in reversed(range(len(self.up))):
            if level < len(self.upsample):
                h = nn.functional.interpolate(h, size=skips[level].shape[-2:], mode="nearest")
                h = self.upsample[level](h)
            h = self.up[level](torch.cat([h, skips[level]], dim=1), temb)
        return self.head(h)
