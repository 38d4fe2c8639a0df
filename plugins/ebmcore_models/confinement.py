"""The confining wall that makes a neural energy a density whatever its weights.

A network with Lipschitz activations (every one in :data:`ebmcore_models._common.ACTIVATIONS`)
grows at most linearly, and can fall without bound in some direction: then ``exp(-E)`` has no
finite integral and every likelihood figure is an artefact of where the evaluation stops.
Adding ``wall(x) = ½ (d_ball(x)² + d_box(x)²) / w²``, where ``d_ball`` is the distance from
``x`` to the ball of radius ``R`` around ``c`` that holds the data and ``d_box`` the distance
to the data's bounding box ``[low, high]``, bounds ``E`` below by a quadratic far away, so
``exp(-E)`` is integrable for every value of the network's weights. The wall is zero where the
ball and the box meet, which holds every data point, and there the network alone shapes the
density. ``c``, ``R``, ``low``, ``high`` and ``w`` are fixed from a data sample by
:meth:`Confinement.fit` (the :class:`ebmcore.train.Trainer` does it before the first step)
and saved as buffers, so a saved model keeps its wall.

Why the box as well as the ball: the ball around a square data set (``checkerboard``) reaches
0.7 times the square's half-width past its edges, and there nothing but the network held mass
down; contrastive training capped the network's energy at ``1 / (2 alpha)`` in that strip,
and 0.2 % of the model's mass sat outside the data's box (docs/training-results.md). For
round data the ball is the tighter of the two and the box adds nothing near the data. A
model saved before the box existed loads with no box (``low = -inf``, ``high = inf``), so its
density is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ebmcore.validation import check_points, check_positive


class Confinement(nn.Module):
    """``½ (max(0, |x - center| - radius)² + |x - clamp(x, low, high)|²) / width²`` per point.

    The buffers are fitted to data. Before :meth:`fit` the wall is ``½ |x|²`` (center 0,
    radius 0, width 1, no box): a standard normal base, so an untrained model is already a
    density.

    Args:
        event_shape: The shape of one point.
        width_factor: The wall's width ``w`` as a multiple of the data's standard deviation
            (pooled over coordinates). 0.25 trained best on the 2-D data sets
            (docs/training-results.md): wide enough not to cut the data's own tails, steep
            enough that almost no mass leaks past the data.
    """

    def __init__(self, event_shape: Sequence[int], width_factor: float = 0.25) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.width_factor = check_positive("wall_width", width_factor)
        self.register_buffer("center", torch.zeros(self.event_shape))
        self.register_buffer("radius", torch.tensor(0.0))
        self.register_buffer("width", torch.tensor(1.0))
        self.register_buffer("low", torch.full(self.event_shape, -math.inf))
        self.register_buffer("high", torch.full(self.event_shape, math.inf))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Fix the wall from a data sample ``x`` of shape ``(N, *event_shape)``, ``N >= 2``.

        The centre is the sample mean, the radius the largest distance of a sample point
        from it, the box the per-coordinate range of the sample, and the width
        ``width_factor`` times the pooled standard deviation.
        """
        x = check_points("x", x, self.event_shape)
        if x.shape[0] < 2:
            raise ValueError(f"fitting the confinement needs at least 2 points, got "
                             f"{x.shape[0]}")
        flat = x.detach().to(torch.float64).flatten(1)
        center = flat.mean(0)
        std = float(flat.var(0).mean().sqrt())
        if not std > 0:
            raise ValueError("fitting the confinement needs points that are not all equal")
        self.center.copy_(center.view(self.event_shape))
        self.radius.fill_(float((flat - center).norm(dim=1).max()))
        self.width.fill_(self.width_factor * std)
        self.low.copy_(flat.amin(0).view(self.event_shape))
        self.high.copy_(flat.amax(0).view(self.event_shape))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the wall's energy ``(B,)`` for a batch ``x`` of shape ``(B, *event_shape)``."""
        squared = (x - self.center).flatten(1).square().sum(1)
        # Only points beyond the radius reach the square root (NaN counts as beyond, so it
        # propagates): inside, and at the centre, the wall and all its derivatives are 0,
        # where |x - c| itself would give score matching a NaN second derivative.
        outside = ~(squared <= self.radius.square())
        distance = torch.sqrt(torch.where(outside, squared, torch.ones_like(squared)))
        ball = torch.where(outside, (distance - self.radius).square(),
                           torch.zeros_like(squared))
        # distance to the box, per coordinate: 0 inside, and 0 everywhere before a fit
        # (low = -inf, high = inf); torch.clamp would give inf - inf there
        beyond = torch.relu(x - self.high) + torch.relu(self.low - x)
        box = beyond.flatten(1).square().sum(1)
        return 0.5 * (ball + box) / self.width.square()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # a wall saved before the box existed keeps its density: no box
        for name, fill in (("low", -math.inf), ("high", math.inf)):
            if prefix + "center" in state_dict and prefix + name not in state_dict:
                state_dict[prefix + name] = torch.full_like(state_dict[prefix + "center"],
                                                            fill)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"radius={float(self.radius):.4g}, width={float(self.width):.4g}, "
                f"fitted={bool(self.fitted)}")
