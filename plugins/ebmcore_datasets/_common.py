"""Helpers shared by the toy data sets: argument checks and private random streams."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ebmcore.dataset import Box, Dataset
from ebmcore.validation import check_int, check_points, check_positive
from ebmcore_datasets import TOY_HALF_WIDTH

LOG_2PI = math.log(2.0 * math.pi)


def check_dtype(dtype: Any) -> torch.dtype:
    """Return ``dtype`` after checking it is a floating-point ``torch.dtype``."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def resolve_generator(generator: torch.Generator | None) -> torch.Generator:
    """Return ``generator``, or a freshly seeded private one so the global RNG is never used."""
    if generator is None:
        fresh = torch.Generator()
        fresh.seed()  # seeds from the OS, leaving torch's global generator alone
        return fresh
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")
    return generator


def check_sample_args(n: Any, generator: torch.Generator | None,
                      dtype: Any) -> tuple[int, torch.Generator, torch.dtype]:
    """Validate the arguments every ``sample`` takes."""
    return check_int("n", n, minimum=1), resolve_generator(generator), check_dtype(dtype)


def check_noise(name: str, value: Any) -> float:
    """Return a strictly positive noise scale (zero noise would make the density singular)."""
    return check_positive(name, value)


def check_x(x: Any) -> torch.Tensor:
    """Check that ``x`` is a finite floating-point batch of 2-D points."""
    return check_points("x", x, (2,))


def uniform(n: int, generator: torch.Generator, *size: int) -> torch.Tensor:
    """Draw float64 U[0, 1) numbers of shape ``(n, *size)`` on the generator's device."""
    return torch.rand((n, *size), generator=generator, dtype=torch.float64,
                      device=generator.device)


def normal(n: int, generator: torch.Generator, *size: int) -> torch.Tensor:
    """Draw float64 standard normals of shape ``(n, *size)`` on the generator's device."""
    return torch.randn((n, *size), generator=generator, dtype=torch.float64,
                       device=generator.device)


def choice(n: int, k: int, generator: torch.Generator,
           probs: torch.Tensor | None = None) -> torch.Tensor:
    """Draw ``n`` component indices in ``[0, k)``, uniformly or with probabilities ``probs``."""
    if probs is None:
        return torch.randint(k, (n,), generator=generator, device=generator.device)
    return torch.multinomial(probs.to(generator.device), n, replacement=True,
                             generator=generator)


def positive_floats(name: str, values: Any, *, min_len: int = 1) -> tuple[float, ...]:
    """Return ``values`` as a tuple of positive floats, checking its type and length."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of positive numbers, got "
                        f"{type(values).__name__}")
    if len(values) < min_len:
        raise ValueError(f"{name} must hold at least {min_len} value(s), got {len(values)}")
    return tuple(check_positive(f"{name}[{i}]", v) for i, v in enumerate(values))


class ToyDataset(Dataset):
    """A 2-D toy data set: subclasses draw float64 points in :meth:`_draw`; this class checks
    the arguments and casts, so every data set samples the same way."""

    event_shape = (2,)

    @property
    def evaluation_box(self) -> Box:
        """``[-5, 5]²``: holds all but a negligible share of every toy set's mass at its
        default parameters (the figures in docs/training-results.md use it)."""
        return ((-TOY_HALF_WIDTH, TOY_HALF_WIDTH),) * 2

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw ``n`` points ``(n, 2)``.

        Args:
            n: Number of points.
            generator: Source of randomness; ``None`` uses a fresh private generator.
            dtype: Floating-point dtype of the result.
        """
        n, generator, dtype = check_sample_args(n, generator, dtype)
        return self._draw(n, generator).to(dtype)

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` float64 points ``(n, 2)`` drawn with ``generator``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _draw(n, generator)")
