"""Data sets without a closed-form density: their generating processes, checked exactly.

Sample moments are compared with the moments derived from each generating process, with
tolerances of 5 Monte Carlo standard errors (``std / sqrt(N)`` of the averaged quantity).
"""

from __future__ import annotations

import math

import torch

import ebmcore

N = 100_000


def _assert_mean(values: torch.Tensor, expected: float) -> None:
    mcse = float(values.std()) / math.sqrt(values.numel())
    assert abs(float(values.mean()) - expected) < 5 * mcse, (float(values.mean()), expected, mcse)


def _draw(name: str, seed: int, **params) -> torch.Tensor:
    data = ebmcore.create("dataset", name, **params)
    return data.sample(N, torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_two_moons_mean():
    x = _draw("two_moons", 0)
    # Upper moon mean (0, 2/π), lower (1, 1/2 - 2/π); mixed: (1/2, 1/4); ×2 + (-1, -0.2).
    _assert_mean(x[:, 0], 0.0)
    _assert_mean(x[:, 1], 0.3)


def test_two_moons_points_lie_on_the_two_half_circles():
    x = _draw("two_moons", 1, noise=1e-9, scale=1.0, shift=(0.0, 0.0))
    upper = ((x.norm(dim=1) - 1).abs() < 1e-6) & (x[:, 1] >= -1e-6)
    lower = (((x - torch.tensor([1.0, 0.5], dtype=x.dtype)).norm(dim=1) - 1).abs() < 1e-6) \
        & (x[:, 1] <= 0.5 + 1e-6)
    assert bool((upper | lower).all())
    _assert_mean(upper.double(), 0.5)


def test_swiss_roll_moments():
    a, b, noise, scale = 1.5 * math.pi, 4.5 * math.pi, 1.0, 0.2
    x = _draw("swiss_roll", 2)
    # t ~ U(a, b): ∫ t cos t = t sin t + cos t, ∫ t sin t = sin t - t cos t.
    mean_x = ((b * math.sin(b) + math.cos(b)) - (a * math.sin(a) + math.cos(a))) / (b - a)
    mean_y = ((math.sin(b) - b * math.cos(b)) - (math.sin(a) - a * math.cos(a))) / (b - a)
    _assert_mean(x[:, 0], scale * mean_x)
    _assert_mean(x[:, 1], scale * mean_y)
    mean_t2 = (b**3 - a**3) / (3 * (b - a))
    _assert_mean(x.pow(2).sum(1), scale**2 * (mean_t2 + 2 * noise**2))


def test_swiss_roll_points_follow_the_spiral():
    x = _draw("swiss_roll", 3, noise=1e-9, scale=1.0, t_min=1.0, t_max=7.0)
    t = x.norm(dim=1)  # |(t cos t, t sin t)| = t
    assert bool(((t > 1.0 - 1e-6) & (t < 7.0 + 1e-6)).all())
    torch.testing.assert_close(x, torch.stack([t * t.cos(), t * t.sin()], 1), atol=1e-6,
                               rtol=0)


def test_spirals_moments():
    turns, scale, noise = 1.5, 1.0 / 3.0, 0.1
    x = _draw("spirals", 4)
    _assert_mean(x[:, 0], 0.0)  # the two arms are mirror images through the origin
    _assert_mean(x[:, 1], 0.0)
    big_t = 2 * math.pi * turns  # t = T sqrt(u): E t² = T² / 2
    _assert_mean(x.pow(2).sum(1), scale**2 * big_t**2 / 2 + 2 * noise**2)


def test_spirals_arms_are_rotated_copies():
    x = _draw("spirals", 5, n_arms=3, noise=1e-9, scale=1.0)
    t = x.norm(dim=1)
    base = torch.atan2(t * t.sin(), -t * t.cos())  # angle of the unrotated arm at radius t
    offset = torch.remainder(torch.atan2(x[:, 1], x[:, 0]) - base, 2 * math.pi)
    arm = torch.round(offset / (2 * math.pi / 3)) % 3
    residual = torch.remainder(offset - arm * 2 * math.pi / 3 + math.pi, 2 * math.pi) - math.pi
    assert float(residual[t > 1e-3].abs().max()) < 1e-5
    for k in range(3):
        _assert_mean((arm == k).double(), 1 / 3)


def test_pinwheel_moments():
    rs, ts, scale = 0.3, 0.1, 2.0
    x = _draw("pinwheel", 6)
    _assert_mean(x[:, 0], 0.0)  # five evenly rotated blades cancel
    _assert_mean(x[:, 1], 0.0)
    # Rotation keeps |f|: E|x|² = scale² E|f|² = scale² (1 + rs² + ts²).
    _assert_mean(x.pow(2).sum(1), scale**2 * (1 + rs**2 + ts**2))


def test_pinwheel_single_blade_without_curl_is_a_gaussian():
    x = _draw("pinwheel", 7, n_blades=1, rate=0.0, scale=1.0)
    # rate 0 and one blade: no rotation, x = f ~ N((1, 0), diag(0.09, 0.01)).
    _assert_mean(x[:, 0], 1.0)
    _assert_mean(x[:, 1], 0.0)
    _assert_mean((x[:, 0] - 1) ** 2, 0.09)
    _assert_mean(x[:, 1] ** 2, 0.01)
