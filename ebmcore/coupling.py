"""The coupling contract: which noise pairs with which datum in a training batch.

Flow matching draws a batch of noise ``x0`` and a batch of data ``x1``; a :class:`Coupling`
re-pairs them before the interpolant joins each pair by a path. The independent coupling
keeps the pairs as drawn; optimal-transport couplings pair each datum with nearby noise, so
the paths cross less and the learnt field is straighter.
"""

from __future__ import annotations

import torch

__all__ = ["Coupling", "check_batches"]


def check_batches(x0: torch.Tensor, x1: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x0`` and ``x1`` are batches of one shape ``(B, ...)``
    with ``B >= 1``, on one device."""
    for label, x in (("x0", x0), ("x1", x1)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"{label} must be a non-empty batch (B, *event_shape), got shape "
                             f"{tuple(x.shape)}")
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and "
                         f"{tuple(x1.shape)}")
    if x0.device != x1.device:
        raise ValueError(f"x0 and x1 must be on one device, got {x0.device} and {x1.device}")


class Coupling:
    """Re-pairs a batch of noise with a batch of data.

    Subclasses implement :meth:`indices` (which rows of ``x0`` and ``x1`` to pair); the base
    :meth:`pair` checks the batches and gathers the rows. A coupling that makes new points
    rather than choosing rows may override :meth:`pair` itself. Every random draw uses the
    ``generator`` passed in, so a seeded run pairs the same way twice.
    """

    def indices(self, x0: torch.Tensor, x1: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(rows, cols)``, two int64 tensors of length ``B``: the pairs are
        ``(x0[rows[k]], x1[cols[k]])``."""
        raise NotImplementedError(f"{type(self).__name__} must implement indices() or pair()")

    def pair(self, x0: torch.Tensor, x1: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the re-paired batches ``(x0, x1)``, shaped as given.

        Args:
            x0: Noise, shape ``(B, *event_shape)``.
            x1: Data, the same shape.
            generator: The random stream for any draw the coupling makes.
        """
        check_batches(x0, x1)
        rows, cols = self.indices(x0, x1, generator)
        batch = x0.shape[0]
        for label, index in (("rows", rows), ("cols", cols)):
            if index.shape != (batch,):
                raise ValueError(f"{type(self).__name__}.indices returned {label} of shape "
                                 f"{tuple(index.shape)}; expected ({batch},)")
        return x0[rows.to(x0.device)], x1[cols.to(x1.device)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
