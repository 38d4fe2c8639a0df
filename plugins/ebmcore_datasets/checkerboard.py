"""Uniform density on the black squares of a checkerboard."""

from __future__ import annotations

import math

import torch

from ebmcore.dataset import Box, Dataset
from ebmcore.validation import check_int, check_positive
from ebmcore_datasets._common import check_sample_args, check_x, choice, uniform


class Checkerboard(Dataset):
    """Points uniform on the black squares of an ``n_squares × n_squares`` board.

    The board covers ``[-width/2, width/2)²``. Square ``(i, j)``, counted from the lower-left
    corner, is black when ``i + j`` is even, so there are ``ceil(n_squares² / 2)`` black
    squares and the density there is ``1 / (n_black · side²)`` with ``side = width /
    n_squares``; elsewhere it is zero (``log_prob`` is ``-inf``). Squares are half-open,
    ``[lo, hi)``, on each axis. The defaults are FFJORD's "checkerboard" (4 × 4 squares of
    side 2).

    Args:
        n_squares: Number of squares along each side of the board.
        width: Side length of the whole board.
    """

    def __init__(self, n_squares: int = 4, width: float = 8.0) -> None:
        self.n_squares = check_int("n_squares", n_squares, minimum=1)
        self.width = check_positive("width", width)
        self.side = self.width / self.n_squares
        i, j = torch.meshgrid(torch.arange(self.n_squares), torch.arange(self.n_squares),
                              indexing="ij")
        black = (i + j) % 2 == 0
        self.black_squares = torch.stack([i[black], j[black]], dim=1)  # (n_black, 2)
        n_black = self.black_squares.shape[0]
        self._log_density = -math.log(n_black) - 2.0 * math.log(self.side)

    @property
    def evaluation_box(self) -> Box:
        """The board with a margin of an eighth of its width on every side: ``[-5, 5]²``
        for the default board, as for the other toy sets."""
        half = 0.625 * self.width
        return ((-half, half), (-half, half))

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw ``n`` points ``(n, 2)``.

        Args:
            n: Number of points.
            generator: Source of randomness; ``None`` uses a fresh private generator.
            dtype: Floating-point dtype of the result.
        """
        n, generator, dtype = check_sample_args(n, generator, dtype)
        square = self.black_squares.to(generator.device)[
            choice(n, self.black_squares.shape[0], generator)]
        corner = square.to(torch.float64) * self.side - 0.5 * self.width
        points = (corner + self.side * uniform(n, generator, 2)).to(dtype)
        # Rounding to ``dtype`` can land u ≈ 1 on the square's open upper edge; keep it inside.
        upper = (corner + self.side).to(dtype)
        return torch.minimum(points, torch.nextafter(upper, torch.full_like(upper, -math.inf)))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact log density ``(B,)`` at ``x`` (``-inf`` off the black squares)."""
        x = check_x(x)
        index = torch.floor((x + 0.5 * self.width) / self.side)
        inside = ((index >= 0) & (index < self.n_squares)).all(dim=1)
        black = inside & (index.sum(dim=1) % 2 == 0)
        out = torch.full(x.shape[:1], -math.inf, dtype=x.dtype, device=x.device)
        return out.masked_fill(black, self._log_density)
