"""Evaluate energies and samples honestly.

- :func:`grid_evaluation`: exact 2-D evaluation by quadrature (test NLL, KL, total variation).
- :func:`ais` / :func:`reverse_ais`: annealed importance sampling, a stochastic lower / upper
  bound of ``log Z`` with standard errors and effective sample sizes.
- :func:`mmd`: maximum mean discrepancy between two samples with a permutation test.
- :func:`ksd`: kernel Stein discrepancy between a sample and an energy, with a bootstrap test.
"""

from __future__ import annotations

from ebmcore.evaluation.ais import AISResult, AnnealedEnergy, ais, reverse_ais, schedule
from ebmcore.evaluation.discrepancy import (
    TestResult,
    ksd,
    median_bandwidth,
    mmd,
    stein_kernel_matrix,
)
from ebmcore.evaluation.grid import GridEvaluation, grid_evaluation, make_grid

__all__ = [
    "AISResult", "AnnealedEnergy", "GridEvaluation", "TestResult", "ais", "grid_evaluation",
    "ksd", "make_grid", "median_bandwidth", "mmd", "reverse_ais", "schedule",
    "stein_kernel_matrix",
]
