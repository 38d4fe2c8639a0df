"""Tests of the burn-in adaptation blocks: dual averaging, Welford, mass windows."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_samplers.adaptation import DualAveraging, Welford, mass_windows


def test_dual_averaging_finds_the_step_size_of_the_target_acceptance() -> None:
    # A deterministic acceptance curve accept(eps) = exp(-eps): the fixed point is
    # eps* = -log(target); chains start on both sides of it.
    target = 0.65
    da = DualAveraging(torch.tensor([0.01, 0.5, 5.0], dtype=torch.float64), target)
    eps = da.final()
    for _ in range(3000):
        eps = da.update(torch.exp(-eps))
    final = da.final()
    assert torch.allclose(final, torch.full_like(final, -math.log(target)), rtol=1e-2)


def test_dual_averaging_shrinks_the_step_on_divergence() -> None:
    da = DualAveraging(1.0, 0.8, n_chains=2)
    eps = da.update(torch.tensor([float("nan"), 1.0]))
    assert eps[0] < eps[1]


def test_dual_averaging_validates() -> None:
    with pytest.raises(ValueError, match="target_accept"):
        DualAveraging(1.0, 1.0, n_chains=1)
    with pytest.raises(ValueError, match="n_chains"):
        DualAveraging(1.0, 0.5)
    with pytest.raises(ValueError, match="step_size"):
        DualAveraging(-1.0, 0.5, n_chains=3)


@pytest.mark.parametrize("dense", [False, True])
def test_welford_batches_match_the_pooled_covariance(dense: bool) -> None:
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0])
               + 5.0 for n in (7, 1, 30, 12)]
    w = Welford(3, dense=dense)
    for b in batches:
        w.update(b)
    data = torch.cat(batches)
    assert w.n == data.shape[0]
    assert torch.allclose(w.mean, data.mean(0))
    expected = torch.cov(data.T) if dense else data.var(0)
    assert torch.allclose(w.covariance(regularize=False), expected)
    n = data.shape[0]
    shrink = 1e-3 * 5 / (n + 5)
    reg = expected * n / (n + 5) + (shrink * torch.eye(3, dtype=torch.float64) if dense else shrink)
    assert torch.allclose(w.covariance(), reg)


def test_welford_flattens_events_and_checks_sizes() -> None:
    w = Welford(4)
    w.update(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="rows of length 4"):
        w.update(torch.ones(2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        Welford(4).covariance()


def test_mass_windows_stan() -> None:
    assert mass_windows(19, "stan") == []
    # Stan's schedule: 75 fast, windows of 25, 50, 100, ..., the last stretched, 50 fast.
    assert mass_windows(1000, "stan") == [(75, 100), (100, 150), (150, 250), (250, 450),
                                          (450, 950)]
    assert mass_windows(200, "stan") == [(75, 100), (100, 150)]
    assert mass_windows(2000, "stan")[-2:] == [(450, 850), (850, 1950)]
    for n in (20, 30, 100, 149, 150, 151, 200, 333, 1000, 5000):
        windows = mass_windows(n, "stan")
        assert windows, n
        # the step size re-tunes over at least the last 10 iterations (50 once n >= 150)
        assert n - windows[-1][1] >= (50 if n >= 150 else 10)
        assert windows[0][0] == (75 if n >= 150 else int(0.15 * n))
        assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))
        # each window is at least twice the one before (the last takes what is left)
        sizes = [b - a for a, b in windows]
        assert sizes[0] > 0
        assert all(sizes[i + 1] >= 2 * sizes[i] for i in range(len(sizes) - 1)), sizes


def test_mass_windows_fractions() -> None:
    assert mass_windows(19) == []
    for n in (20, 30, 100, 1000):
        windows = mass_windows(n)
        assert windows == mass_windows(n, "fractions")
        # the step size re-tunes over the last 10 %, and at least 10 iterations
        end = min(int(0.9 * n), n - 10)
        assert windows[0][0] == int(0.15 * n) and windows[-1][1] == end
        assert n - windows[-1][1] >= 10
        assert all(a < b for a, b in windows)
        assert all(windows[i][1] == windows[i + 1][0] for i in range(len(windows) - 1))


def test_mass_windows_names_a_bad_schedule() -> None:
    with pytest.raises(ValueError, match="schedule must be 'stan' or 'fractions'"):
        mass_windows(100, "stn")
