"""A dependency-free progress bar that stays quiet when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Print ``label  done/total  rate it/s  extra`` on one updating line.

    Args:
        total: Number of updates expected.
        enabled: Show the bar at all; it is also hidden when ``stream`` is not a terminal.
        label: Text before the counts.
        stream: Where to write (standard error by default).
        min_interval: Seconds between redraws, so drawing never costs more than the work.
    """

    def __init__(self, total: int, *, enabled: bool = True, label: str = "",
                 stream: TextIO | None = None, min_interval: float = 0.2) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.label = label
        self.min_interval = min_interval
        self.done = 0
        self.extra = ""
        self._start = time.perf_counter()
        self._last = 0.0

    def due(self) -> bool:
        """Whether the next :meth:`update` will redraw; compute costly ``extra`` text only then."""
        return self.enabled and time.perf_counter() - self._last >= self.min_interval

    def update(self, n: int = 1, extra: str | None = None) -> None:
        """Count ``n`` more updates and redraw if enough time passed."""
        self.done += n
        if extra is not None:
            self.extra = extra
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last >= self.min_interval or self.done >= self.total:
            self._last = now
            rate = self.done / max(now - self._start, 1e-9)
            self.stream.write(f"\r{self.label} {self.done}/{self.total} {rate:,.1f} it/s "
                              f"{self.extra}".rstrip() + " ")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
