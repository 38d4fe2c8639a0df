"""The interpolant contract: the base class derives sampling and conversions from the
coefficients alone."""

from __future__ import annotations

import pytest
import torch

from ebmcore.interpolant import Interpolant, expand_like
from ebmcore.testing import check_interpolant


class Quadratic(Interpolant):
    """alpha = t^2, sigma = 1 - t^2: a path whose conversions the test can do by hand."""

    def coefficients(self, t):
        return t * t, 1 - t * t, 2 * t, -2 * t


def test_sample_follows_the_coefficients():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9])
    xt, ut = Quadratic().sample(x0, x1, t)
    torch.testing.assert_close(xt, (t * t)[:, None] * x1 + (1 - t * t)[:, None] * x0)
    torch.testing.assert_close(ut, (2 * t)[:, None] * (x1 - x0))


def test_conversions_by_hand():
    """At t = 0.5: alpha = 1/4, sigma = 3/4, alpha' = 1, sigma' = -1."""
    xt, v = torch.tensor([[2.0]]), torch.tensor([[3.0]])
    path, t = Quadratic(), torch.tensor([0.5])
    # eps = (alpha v - alpha' xt) / (alpha sigma' - alpha' sigma) = (3/4 - 2) / (-1) = 5/4
    torch.testing.assert_close(path.velocity_to_noise(v, xt, t), torch.tensor([[1.25]]))
    torch.testing.assert_close(path.velocity_to_score(v, xt, t), torch.tensor([[-1.25 / 0.75]]))
    torch.testing.assert_close(path.noise_to_velocity(torch.tensor([[1.25]]), xt, t), v)
    torch.testing.assert_close(path.score_to_velocity(torch.tensor([[-1.25 / 0.75]]), xt, t), v)


def test_a_subclass_that_only_gives_coefficients_passes_the_kit():
    check_interpolant(Quadratic())


def test_the_base_needs_coefficients():
    with pytest.raises(NotImplementedError, match="coefficients"):
        Interpolant().sample(torch.zeros(2, 1), torch.zeros(2, 1), 0.5)


def test_a_float_time_works_and_a_wrong_time_shape_is_named():
    xt, _ = Quadratic().sample(torch.zeros(3, 2), torch.ones(3, 2), 0.5)
    torch.testing.assert_close(xt, torch.full((3, 2), 0.25))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(B,\) = \(3,\)"):
        Quadratic().sample(torch.zeros(3, 2), torch.ones(3, 2), torch.ones(4))
    with pytest.raises(ValueError, match="same shape"):
        Quadratic().sample(torch.zeros(3, 2), torch.ones(3, 3), 0.5)


def test_expand_like_broadcasts_over_event_dimensions():
    c = torch.arange(2.0)
    assert expand_like(c, torch.zeros(2, 3, 4, 5)).shape == (2, 1, 1, 1)
    assert expand_like(torch.tensor(1.0), torch.zeros(2, 3)).dim() == 0
