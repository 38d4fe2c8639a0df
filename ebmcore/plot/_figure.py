"""The one way every plot makes its figure: matplotlib's object-oriented API on the
non-interactive Agg canvas (headless, and never touching pyplot's global state)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(ncols: int = 1, nrows: int = 1, size: float = 4.0) -> tuple[Figure, Any]:
    """A figure with a grid of ``nrows`` x ``ncols`` axes (always 2-D), ``size`` inches each.

    Raises:
        ImportError: Naming the ``plot`` extra when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ebmcore.plot needs matplotlib; install it with: pip install 'ebmcore[plot]'"
        ) from exc
    fig = Figure(figsize=(size * ncols, size * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes
