"""``benchmarks/flow_grid_tv.py``: the cell quadrature of a density and the predicted
histogram TV of n samples drawn from cell probabilities."""

from __future__ import annotations

import math
from types import ModuleType

import torch
from benchmark_modules import load_benchmark


def load_script() -> ModuleType:
    """Import ``benchmarks/flow_grid_tv.py`` as a module (once per session)."""
    return load_benchmark("flow_grid_tv")


def _gaussian_cells(script: ModuleType, std: float) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Midpoint densities of N(0.3, std^2 I) on the script's grid over [-5, 5]^2, the cell
    area, and the exact cell probabilities (products of normal CDF differences)."""
    n = script.RESOLUTION
    edges = torch.linspace(-5.0, 5.0, n + 1, dtype=torch.float64)
    mids = 0.5 * (edges[1:] + edges[:-1])
    pdf = torch.exp(-0.5 * ((mids - 0.3) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    cdf = 0.5 * (1 + torch.erf((edges - 0.3) / (std * math.sqrt(2))))
    exact = (cdf[1:] - cdf[:-1])
    return pdf[:, None] * pdf[None, :], 0.01, (exact[:, None] * exact[None, :]).reshape(-1)


def test_corrected_rule_beats_the_midpoint_rule_on_a_narrow_gaussian() -> None:
    script = load_script()
    density, area, exact = _gaussian_cells(script, std=0.15)  # 1.5 cells wide
    mid = script.cell_masses(density, area, 1, corrected=False)
    cor = script.cell_masses(density, area, 1, corrected=True)
    err_mid, err_cor = script.tv(mid, exact), script.tv(cor, exact)
    assert err_cor < err_mid / 10, (err_mid, err_cor)
    assert err_cor < 2e-3  # of a TV; the midpoint rule is off by ten times that


def test_sampled_tv_matches_the_binomial_expectation() -> None:
    script = load_script()
    p = torch.full((script.RESOLUTION ** 2,), 1.0 / script.RESOLUTION ** 2,
                   dtype=torch.float64)
    n, repeats = 1_000_000, 8
    mean, sd = script.sampled_tv(p, p, n, repeats, seed=0)
    # E|X/n - p| for X ~ Binomial(n, p) with np = 100 is sqrt(2 p (1 - p) / (pi n)) to 0.3 %
    k = p.numel()
    expected = 0.5 * k * math.sqrt(2 * (1 / k) * (1 - 1 / k) / (math.pi * n))
    assert abs(mean - expected) < 4 * sd / math.sqrt(repeats) + 0.005 * expected, \
        (mean, expected, sd)
    # a model off by a fixed TV d adds about d at this size (here d = 0.1 >> the floor)
    shifted = p.clone().reshape(script.RESOLUTION, -1)
    shifted[:10] *= 2.0
    shifted[10:20] = 0.0
    off, _ = script.sampled_tv(shifted.reshape(-1), p, n, 2, seed=1)
    assert abs(script.tv(shifted.reshape(-1), p) - 0.1) < 1e-12
    assert 0.1 < off < 0.1 + expected
