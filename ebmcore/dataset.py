"""The dataset contract: a sampler of data with, where known, its exact density."""

from __future__ import annotations

import torch


class Dataset:
    """Base class of every data set.

    Subclasses implement :meth:`sample`; those whose generating density is known in closed
    form also implement :meth:`log_prob`.

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
