"""Streaming a run's kept steps into a ``.npy`` file as they come (an ``on_keep`` hook)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ebmcore.validation import check_int


class TrajectoryFile:
    """An ``on_keep`` hook that streams every kept step into a ``.npy`` file.

    :func:`numpy.lib.format.open_memmap` creates the file at its final size (header, then
    ``(T, B, *event_shape)`` values, C order; sparse until written), and each kept step is
    written at its offset as it comes: one row of ``B * D`` values, so the hook holds one
    row at a time whatever ``T`` and ``B``. Read it back with
    ``numpy.load(path, mmap_mode="r")``. Use it as a context manager, or call :meth:`close`.

    Args:
        path: The ``.npy`` file to create (replaced if it exists).
        n_kept: Number of kept steps ``T`` (``n_steps // thin``).
        shape: Positions' shape ``(B, *event_shape)``.
        dtype: The positions' dtype (``torch.float32`` or ``torch.float64``).
        columns: The chains ``[start, stop)`` this writer fills, when several writers (the
            ranks of sharded sampling) share the file; the hook then gets ``stop - start``
            rows. ``None``: all of them.
        create: Create the file; ``False`` opens one of this shape that another writer
            created.
    """

    def __init__(self, path: str | Path, n_kept: int, shape: tuple[int, ...] | torch.Size,
                 dtype: torch.dtype, *, columns: tuple[int, int] | None = None,
                 create: bool = True) -> None:
        import numpy as np

        check_int("n_kept", n_kept, minimum=1)
        self.path = Path(path)
        self.shape = (n_kept, *(int(n) for n in shape))
        self.dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self._torch_dtype = dtype
        start, stop = (0, self.shape[1]) if columns is None else columns
        if not 0 <= start < stop <= self.shape[1]:
            raise ValueError(f"columns {columns} are not chains of the {self.shape[1]} in "
                             f"{self.path}")
        array = np.lib.format.open_memmap(self.path, mode="w+" if create else "r",
                                          dtype=self.dtype if create else None,
                                          shape=self.shape if create else None)
        if array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError(f"{self.path} holds {array.dtype} {array.shape}, not "
                             f"{self.dtype} {self.shape}")
        chain_bytes = math.prod(self.shape[2:]) * self.dtype.itemsize
        self._offset = int(array.offset) + start * chain_bytes
        del array  # unmapped: rows go in through plain writes, never a mapping of the file
        self._row_bytes = self.shape[1] * chain_bytes
        self._rows = (stop - start, *self.shape[2:])
        self._file: Any = open(self.path, "r+b")  # noqa: SIM115 - closed by close()
        #: Number of rows written so far.
        self.written = 0

    def __call__(self, k: int, x: torch.Tensor) -> None:
        """Write kept step ``k``'s positions ``x`` ``(B, *event_shape)``."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        if not 0 <= k < self.shape[0] or tuple(x.shape) != self._rows:
            raise ValueError(f"kept step {k} with positions {tuple(x.shape)} does not fit "
                             f"{self.path}, shaped {self.shape} (this writer's chains: "
                             f"{self._rows[0]})")
        row = x.detach().to("cpu", self._torch_dtype).contiguous().numpy()
        self._file.seek(self._offset + k * self._row_bytes)
        self._file.write(row.data)
        self.written += 1

    @property
    def complete(self) -> bool:
        """Whether every kept step was written."""
        return self.written == self.shape[0]

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TrajectoryFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
