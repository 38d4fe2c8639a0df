"""Pictures of energies, samples, training and chains (matplotlib, the ``plot`` extra).

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``;
save it with ``fig.savefig(path)``. Figures are built with the object-oriented API on the
non-interactive Agg canvas, so they work headless and never touch pyplot's global state.
One module per subject: :mod:`~ebmcore.plot.densities` (2-D energies and samples),
:mod:`~ebmcore.plot.diagnostics` (training curves and chains), :mod:`~ebmcore.plot.images`.
"""

from __future__ import annotations

from ebmcore.plot.densities import energy_contours, grid, sample_scatter
from ebmcore.plot.diagnostics import autocorrelation_plot, rank_plot, trace_plot, training_curves
from ebmcore.plot.images import chain_strip, image_grid

__all__ = ["autocorrelation_plot", "chain_strip", "energy_contours", "grid", "image_grid",
           "rank_plot", "sample_scatter", "trace_plot", "training_curves"]
