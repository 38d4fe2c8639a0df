"""The dataset contract: a sampler of data with, where known, its exact density.

:class:`Dataset` is what every data set implements. :class:`ImageDataset` declares what the
image evaluation (:func:`ebmcore.evaluation.image_report.image_evaluation`) and image runs
need of a labelled image data set with discrete intensity levels; the core recognises an
image data set by that base class, never by probing for attributes.
"""

from __future__ import annotations

import torch

#: An axis-aligned box, one ``(low, high)`` pair per coordinate.
Box = tuple[tuple[float, float], ...]


class Dataset:
    """Base class of every data set.

    Subclasses implement :meth:`sample`; those whose generating density is known in closed
    form also implement :meth:`log_prob`; those that know where their mass lies declare
    :attr:`evaluation_box`.

    Attributes:
        event_shape: The shape of one data point.
    """

    event_shape: tuple[int, ...] = (2,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points ``(n, *event_shape)`` without touching the global RNG."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample(n, generator)")

    @property
    def has_log_prob(self) -> bool:
        """Whether :meth:`log_prob` is available."""
        return type(self).log_prob is not Dataset.log_prob

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log density ``(B,)`` of the generating distribution."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form log_prob")

    @property
    def evaluation_box(self) -> Box | None:
        """The box, one ``(low, high)`` per coordinate, that holds nearly all of the data's
        mass and on which a grid evaluation integrates; ``None`` (the default) leaves the
        box to the core's rule from samples (:func:`ebmcore.evaluation.box.evaluation_box`)."""
        return None


class ImageDataset(Dataset):
    """The image-data protocol: a fixed split of labelled images with discrete levels.

    A data set of images subclasses this (the built-in ``digits``, ``mnist`` and
    ``fashion_mnist`` do) and implements :meth:`tensor` and :meth:`held_out`; runs then
    evaluate it as images (AIS bounds in bits per dimension, class coverage, MMD).

    Attributes:
        event_shape: The shape ``(C, H, W)`` of one image.
        levels: The number of discrete intensity levels (pixels hold ``0 .. levels - 1``
            before they are mapped to ``[0, 1]``).
        n_classes: The number of label classes.
    """

    event_shape: tuple[int, ...] = (1, 28, 28)
    levels: int = 256
    n_classes: int = 10

    @property
    def bin_width(self) -> float:
        """``1 / levels``: the width of one intensity bin on the ``[0, 1]`` scale (for bits
        per dimension)."""
        return 1.0 / self.levels

    def tensor(self, dtype: torch.dtype = torch.float32,
               generator: torch.Generator | None = None, *,
               return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return the whole split, in order, as ``(N, C, H, W)`` values in ``[0, 1]`` (and the
        ``(N,)`` int64 labels when ``return_labels`` is set), dequantised with ``generator``
        where the data set dequantises."""
        raise NotImplementedError(f"{type(self).__name__} must implement tensor(...)")

    def held_out(self) -> ImageDataset:
        """Return the same data set, with the same parameters, for the held-out split."""
        raise NotImplementedError(f"{type(self).__name__} must implement held_out()")
