"""The closed-form densities: normalised, correct in value, and matching their own samples.

Grid integrals use the midpoint rule. For a smooth density its error is at most
``h²/24 · ∫(|∂²p/∂x²| + |∂²p/∂y²|)``; for a Gaussian of standard deviation ``σ`` along
each axis ``∫|∂²p/∂x²| = E|z² - 1| / σ² ≈ 0.968 / σ²``, so the error is below
``h² / (12 σ²)`` (rings get a factor 2 for the terms their curvature adds). Bin probabilities
for the histogram tests are integrated at two sub-grid resolutions and their difference is
carried as a systematic error next to the binomial standard error.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import ebmcore

N_SAMPLES = 200_000


def _grid(lo: float, hi: float, h: float) -> tuple[torch.Tensor, int]:
    """Cell midpoints of a square grid over ``[lo, hi)²`` with spacing ``h``."""
    m = round((hi - lo) / h)
    axis = lo + h * (torch.arange(m, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1), m


def _mass(data, lo: float, hi: float, h: float) -> float:
    points, _ = _grid(lo, hi, h)
    return float(data.log_prob(points).exp().sum() * h * h)


def _bin_probs(data, lo: float, hi: float, n_bins: int, k: int) -> torch.Tensor:
    """Probability of each of ``n_bins²`` bins, midpoint rule with ``k×k`` points per bin."""
    h = (hi - lo) / (n_bins * k)
    points, m = _grid(lo, hi, h)
    p = data.log_prob(points).exp().reshape(m, m) * h * h
    return p.reshape(n_bins, k, n_bins, k).sum(dim=(1, 3))


def _histogram(x: torch.Tensor, lo: float, hi: float, n_bins: int) -> torch.Tensor:
    idx = torch.floor((x.double() - lo) / (hi - lo) * n_bins).long()
    inside = ((idx >= 0) & (idx < n_bins)).all(dim=1)
    flat = idx[inside, 0] * n_bins + idx[inside, 1]
    return torch.bincount(flat, minlength=n_bins * n_bins).reshape(n_bins, n_bins).double()


CASES = {
    "eight_gaussians": ({}, 6.0),
    "eight_gaussians_overlapping": ({"n_components": 3, "radius": 0.5, "std": 0.6}, 4.0),
    "rings": ({}, 3.6),
    "rings_weighted": ({"radii": (0.5, 2.0), "noise": 0.3, "weights": (1.0, 3.0)}, 4.0),
    "checkerboard": ({}, 4.0),
    "checkerboard_odd": ({"n_squares": 3, "width": 3.0}, 1.5),
}


def _make(case: str):
    params, half = CASES[case]
    return ebmcore.create("dataset", case.split("_overlapping")[0].split("_weighted")[0]
                          .split("_odd")[0], **params), half


@pytest.mark.parametrize("case", ["eight_gaussians", "eight_gaussians_overlapping"])
def test_gaussian_mixture_integrates_to_one(case):
    data, _ = _make(case)
    sigma = data.std
    half = data.radius + 10 * sigma  # mass beyond 10σ of every centre is below 1e-20
    h = sigma / 8
    assert _mass(data, -half, half, h) == pytest.approx(1.0, abs=h * h / (12 * sigma**2))


@pytest.mark.parametrize("case", ["rings", "rings_weighted"])
def test_rings_integrate_to_one(case):
    data, _ = _make(case)
    sigma = data.noise
    half = max(data.radii) + 10 * sigma
    h = sigma / 8
    assert _mass(data, -half, half, h) == pytest.approx(1.0, abs=2 * h * h / (12 * sigma**2))


@pytest.mark.parametrize("case", ["checkerboard", "checkerboard_odd"])
def test_checkerboard_integrates_to_one_exactly(case):
    data, _ = _make(case)
    # Cells aligned with the squares lie wholly inside or outside one, so the midpoint rule is
    # exact; only float64 rounding of ~10⁵ terms remains.
    half = data.width / 2 + data.side  # one square of margin, where the density is zero
    assert _mass(data, -half, half, data.side / 8) == pytest.approx(1.0, abs=1e-9)


def test_gaussian_mixture_matches_torch_distributions():
    data = ebmcore.create("dataset", "eight_gaussians", n_components=5, radius=1.5, std=0.4)
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.full((5,), 0.2, dtype=torch.float64)),
        torch.distributions.Independent(
            torch.distributions.Normal(data.centers, torch.full((5, 2), 0.4,
                                                                dtype=torch.float64)), 1),
    )
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    torch.testing.assert_close(data.log_prob(x), mix.log_prob(x), rtol=1e-12, atol=1e-12)
    angles = torch.atan2(data.centers[:, 1], data.centers[:, 0])
    torch.testing.assert_close(data.centers.norm(dim=1), torch.full((5,), 1.5,
                                                                   dtype=torch.float64))
    spacing = torch.diff(torch.sort(torch.remainder(angles, 2 * math.pi)).values)
    torch.testing.assert_close(spacing, torch.full((4,), 2 * math.pi / 5, dtype=torch.float64))


def test_rings_density_matches_angular_quadrature():
    """The Bessel form equals the average over the ring angle of Gaussian densities."""
    data = ebmcore.create("dataset", "rings", radii=(0.7, 1.9), noise=0.25, weights=(2.0, 1.0))
    x = torch.tensor([[0.0, 0.0], [0.7, 0.0], [0.3, -1.2], [-1.9, 0.4], [2.5, 2.5]],
                     dtype=torch.float64)
    theta = 2 * math.pi * (torch.arange(4096, dtype=torch.float64) + 0.5) / 4096
    ring = torch.stack([theta.cos(), theta.sin()], dim=1)  # periodic: midpoint rule converges
    expected = torch.zeros(len(x), dtype=torch.float64)
    for w, r in zip((2 / 3, 1 / 3), (0.7, 1.9), strict=True):
        sq = (x[:, None, :] - r * ring[None]).pow(2).sum(-1)
        gauss = torch.exp(-sq / (2 * 0.25**2)) / (2 * math.pi * 0.25**2)
        expected += w * gauss.mean(dim=1)
    torch.testing.assert_close(data.log_prob(x), expected.log(), rtol=1e-10, atol=1e-10)


def test_checkerboard_pattern_and_edges():
    data = ebmcore.create("dataset", "checkerboard")
    x = torch.tensor([[-3.5, -3.5], [-1.5, -3.5], [-3.5, -1.5], [-1.5, -1.5], [0.5, 0.5],
                      [3.9, 3.9], [-4.0, -4.0], [4.0, 0.5], [-4.1, -3.5], [-2.0, -3.5]])
    lp = data.log_prob(x)
    inside = -math.log(32.0)  # 8 black squares of area 4
    expected = [inside, -math.inf, -math.inf, inside, inside, inside, inside, -math.inf,
                -math.inf, -math.inf]  # squares are half-open: [-4, -2) is black, -2 is not
    assert lp.tolist() == pytest.approx(expected)


def test_checkerboard_samples_stay_inside_black_squares_in_low_precision():
    data = ebmcore.create("dataset", "checkerboard")
    for dtype in (torch.float16, torch.bfloat16):
        x = data.sample(100_000, torch.Generator().manual_seed(0), dtype=dtype)
        assert torch.isfinite(data.log_prob(x.double())).all()


@pytest.mark.parametrize("case", list(CASES))
def test_histogram_of_samples_matches_density(case):
    data, half = _make(case)
    n_bins, k = 16, 12
    x = data.sample(N_SAMPLES, torch.Generator().manual_seed(11), dtype=torch.float64)
    counts = _histogram(x, -half, half, n_bins)
    fine, coarse = _bin_probs(data, -half, half, n_bins, 2 * k), _bin_probs(data, -half, half,
                                                                            n_bins, k)
    expected = N_SAMPLES * fine
    systematic = N_SAMPLES * (fine - coarse).abs()  # grid error estimate for each bin
    variance = N_SAMPLES * fine * (1 - fine) + systematic**2
    used = expected >= 25  # where the normal approximation to the binomial holds
    z = (counts - expected)[used] / variance[used].sqrt()
    n_used = int(used.sum())
    # Bonferroni over the bins, family-wise false-alarm rate 1e-3.
    assert z.abs().max() < stats.norm.isf(1e-3 / (2 * n_used)), z.abs().max()
    assert float((z**2).sum()) < stats.chi2.isf(1e-3, df=n_used)
    # Everything outside the well-populated bins, pooled into one binomial count.
    rest_expected = N_SAMPLES - float(expected[used].sum())
    rest = N_SAMPLES - float(counts[used].sum())
    rest_sd = math.sqrt(max(rest_expected, 1.0) + float(systematic[~used].sum()) ** 2)
    assert abs(rest - rest_expected) < 5 * rest_sd


@pytest.mark.parametrize("case", list(CASES))
def test_mean_log_prob_of_samples_matches_grid_negentropy(case):
    data, half = _make(case)
    x = data.sample(N_SAMPLES, torch.Generator().manual_seed(12), dtype=torch.float64)
    lp = data.log_prob(x)
    mcse = float(lp.std()) / math.sqrt(N_SAMPLES)

    def negentropy(lo, h):
        points, _ = _grid(lo, -lo, h)
        logp = data.log_prob(points)
        p = logp.exp()
        return float(torch.where(p > 0, p * logp, torch.zeros_like(p)).sum() * h * h)

    if hasattr(data, "side"):  # piecewise constant: cells aligned with squares are exact
        lo = -data.width / 2 - data.side
        fine = coarse = negentropy(lo, data.side / 4)
    else:
        lo = -half - 0.5
        fine, coarse = negentropy(lo, -lo / 300), negentropy(lo, -lo / 150)
    assert abs(float(lp.mean()) - fine) < 5 * mcse + abs(fine - coarse) + 1e-9
