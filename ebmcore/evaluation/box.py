"""Which box an evaluation integrates over: given, declared by the data set, or from samples.

The order is fixed here, once: explicit ``bounds`` win; else the data set's own
:attr:`ebmcore.Dataset.evaluation_box`; else the core's rule from samples
(:func:`box_from_samples`); else a default, when the caller has one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ebmcore.dataset import Box, Dataset

#: Each side of the box from samples extends this share of the samples' range beyond them.
SAMPLE_MARGIN = 0.25


def check_box(bounds: Any, dim: int | None = None) -> Box:
    """Return ``bounds`` as one ``(low, high)`` pair per coordinate.

    Args:
        bounds: ``(low, high)`` for every coordinate (``dim`` of them, 2 by default) or one
            pair per coordinate.
        dim: The number of coordinates; ``None`` accepts any number of pairs.

    Raises:
        ValueError: When the pairs are malformed, not finite or not rising.
    """
    pairs: list[tuple[float, ...]] = []
    try:
        if len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds):
            pairs = [tuple(float(b) for b in bounds)] * (2 if dim is None else dim)
        else:
            pairs = [tuple(float(v) for v in pair) for pair in bounds]
    except (TypeError, ValueError):
        pairs = []
    if not pairs or any(len(p) != 2 for p in pairs) or (dim is not None and len(pairs) != dim):
        want = "((x_low, x_high), (y_low, y_high))" if dim in (None, 2) else f"{dim} pairs"
        raise ValueError(f"bounds must be (low, high) or {want}, got {bounds!r}")
    for axis, (low, high) in enumerate(pairs):
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"bounds for coordinate {axis} must be finite with low < high, "
                             f"got ({low}, {high})")
    return tuple((low, high) for low, high in pairs)


def box_from_samples(samples: torch.Tensor, margin: float = SAMPLE_MARGIN) -> Box:
    """The core's rule: per coordinate, the samples' range widened by ``margin`` times that
    range on each side (a coordinate whose samples are all equal gets a unit range).

    Args:
        samples: Points ``(N, D)`` (flattened when they have more dimensions); non-finite
            rows are ignored.
        margin: The share of the range added on each side.
    """
    if not isinstance(samples, torch.Tensor) or samples.dim() < 2 or samples.shape[0] < 1:
        raise ValueError("samples must be a tensor (N, D) with at least one point")
    flat = samples.detach().to(torch.float64).flatten(1)
    flat = flat[torch.isfinite(flat).all(1)]
    if flat.shape[0] == 0:
        raise ValueError("samples holds no finite point to take a box from")
    low, high = flat.min(0).values, flat.max(0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    low, high = low - margin * span, high + margin * span
    return tuple((float(a), float(b)) for a, b in zip(low, high, strict=True))


def evaluation_box(dataset: Dataset | None = None, samples: torch.Tensor | None = None,
                   bounds: Any = None, *, default: Any = None) -> Box:
    """Return the box to evaluate on: ``bounds`` when given, else the data set's declared
    :attr:`~ebmcore.Dataset.evaluation_box`, else :func:`box_from_samples` of ``samples``,
    else ``default``.

    Raises:
        ValueError: When none of them is given.
    """
    if bounds is not None:
        return check_box(bounds)
    if dataset is not None and dataset.evaluation_box is not None:
        return check_box(dataset.evaluation_box)
    if samples is not None:
        return box_from_samples(samples)
    if default is not None:
        return check_box(default)
    raise ValueError("no evaluation box: pass bounds, a data set that declares "
                     "evaluation_box, or samples to take one from")
