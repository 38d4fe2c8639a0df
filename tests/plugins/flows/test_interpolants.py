"""The built-in interpolants: boundary values, closed forms, derivatives and conversions."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_flows.interpolants import CosineInterpolant, LinearInterpolant, VPInterpolant

from ebmcore.testing import check_interpolant

ALL = [LinearInterpolant(), CosineInterpolant(), VPInterpolant()]


@pytest.mark.parametrize("interpolant", ALL, ids=repr)
def test_conformance(interpolant):
    check_interpolant(interpolant)
    check_interpolant(interpolant, event_shape=(1, 4, 4), batch_size=3)


@pytest.mark.parametrize("interpolant", [LinearInterpolant(), CosineInterpolant()], ids=repr)
def test_the_ends_are_exactly_noise_and_data(interpolant):
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    at_noise, _ = interpolant.sample(x0, x1, torch.zeros(5))
    at_data, _ = interpolant.sample(x0, x1, torch.ones(5))
    torch.testing.assert_close(at_noise, x0, rtol=0, atol=1e-7)
    torch.testing.assert_close(at_data, x1, rtol=0, atol=1e-7)


def test_linear_velocity_is_the_difference():
    gen = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(6, 2, generator=gen), torch.randn(6, 2, generator=gen)
    t = torch.rand(6, generator=gen)
    xt, ut = LinearInterpolant().sample(x0, x1, t)
    torch.testing.assert_close(ut, x1 - x0)
    torch.testing.assert_close(xt, t[:, None] * x1 + (1 - t[:, None]) * x0)


def test_cosine_preserves_unit_variance():
    alpha, sigma, _, _ = CosineInterpolant().coefficients(torch.linspace(0, 1, 11))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(11))


def test_vp_matches_song_et_al_marginal():
    """alpha(t) = exp(-B(s)/2) with s = 1 - t, B(s) = 0.1 s + 9.95 s^2 (Song et al. 2021)."""
    t = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0], dtype=torch.float64)
    alpha, sigma, _, _ = VPInterpolant().coefficients(t)
    s = 1 - t
    want = torch.exp(-0.5 * (0.1 * s + 0.5 * 19.9 * s**2))
    torch.testing.assert_close(alpha, want)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    assert alpha[0].item() == pytest.approx(math.exp(-0.5 * (0.1 + 9.95)))


def test_a_scalar_time_broadcasts_over_the_batch():
    x0, x1 = torch.zeros(4, 2, 3), torch.ones(4, 2, 3)
    xt, ut = CosineInterpolant().sample(x0, x1, 0.5)
    torch.testing.assert_close(xt, torch.full((4, 2, 3), math.sin(math.pi / 4)))
    assert ut.shape == (4, 2, 3)


@pytest.mark.parametrize("params, match", [({"beta_min": 0.0}, "beta_min"),
                                           ({"beta_max": float("nan")}, "beta_max"),
                                           ({"beta_min": 5.0, "beta_max": 1.0}, "at least")])
def test_vp_refuses_bad_schedules(params, match):
    with pytest.raises(ValueError, match=match):
        VPInterpolant(**params)
