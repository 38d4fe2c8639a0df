"""The far-field probe (ebmcore/evaluation/tails.py): does exp(-E) have a finite integral?"""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore
from ebmcore.energy import Energy
from ebmcore.evaluation.tails import FarField, directions, far_field


class _Radial(Energy):
    """``E = a log(1 + |x|²)``: its log-log slope tends to ``2a``, so it is a density iff 2a > D."""

    def __init__(self, a: float, dim: int = 2) -> None:
        super().__init__()
        self.a = a
        self.event_shape = (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.log1p(x.pow(2).sum(1))


class _Fn(Energy):
    """A 2-D energy from a function of the batch; records the mode it was called in."""

    event_shape = (2,)

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.seen_training: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        return self.fn(x)


def _std_normal():
    return ebmcore.create("energy", "gaussian", mean=[0.0, 0.0], cov=[[1.0, 0.0], [0.0, 1.0]])


def test_directions_in_2d_are_evenly_spaced_unit_vectors() -> None:
    """In 2-D the directions are the angles 2πk/n, with no randomness."""
    u = directions((2,), 8)
    assert u.shape == (8, 2) and u.dtype == torch.float64
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    want = torch.stack([angles.cos(), angles.sin()], 1)
    torch.testing.assert_close(u, want, rtol=0, atol=1e-15)  # same formula: rounding only
    assert directions((2,), 5, dtype=torch.float32).dtype == torch.float32


def test_directions_in_more_dimensions_start_with_the_axes_and_are_seeded() -> None:
    """For D > 2 the ±axes come first, the rest are seeded unit vectors shaped like an event."""
    u = directions((3,), 10, generator=torch.Generator().manual_seed(1))
    eye = torch.eye(3, dtype=torch.float64)
    assert u.shape == (10, 3)
    assert torch.equal(u[:6], torch.cat([eye, -eye]))
    # Normalised in float64: unit length up to rounding.
    torch.testing.assert_close(u.norm(dim=1), torch.ones(10, dtype=torch.float64))
    again = directions((3,), 10, generator=torch.Generator().manual_seed(1))
    other = directions((3,), 10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(u, again) and not torch.equal(u[6:], other[6:])
    assert torch.equal(directions((3,), 10), directions((3,), 10))  # default seed
    assert torch.equal(directions((3,), 2), eye[:2])  # fewer than 2D: the first axes only
    shaped = directions((2, 2), 12)
    assert shaped.shape == (12, 2, 2)
    torch.testing.assert_close(shaped.reshape(12, 4).norm(dim=1),
                               torch.ones(12, dtype=torch.float64))
    with pytest.raises(ValueError, match="n must be at least 1"):
        directions((2,), 0)


def test_a_gaussian_rises() -> None:
    """A standard normal energy rises, with the slope of |x|²/2 between the two largest radii."""
    far = far_field(_std_normal(), radii=(10.0, 100.0, 1000.0))
    assert isinstance(far, FarField) and far.rises and far.reason == ""
    assert far.dim == 2 and far.radii == [10.0, 100.0, 1000.0]
    # The Gaussian evaluates in float32: relative rounding of about 1e-7.
    assert far.min_energy == pytest.approx([50.0, 5e3, 5e5], rel=1e-6)
    assert far.min_log_slope == pytest.approx((5e5 - 5e3) / math.log(10), rel=1e-6)
    assert far.to_dict()["rises"] is True


def test_a_linearly_falling_energy_fails_on_its_slope() -> None:
    """E = -x₀ falls along +x₀: the probe fails and says the log-log slope is too small."""
    far = far_field(_Fn(lambda x: -x[:, 0]))
    assert not far.rises
    assert far.min_log_slope == pytest.approx(-900 / math.log(10))  # float64 throughout
    assert "log-log slope" in far.reason and "D = 2" in far.reason


def test_a_flat_energy_fails() -> None:
    """A constant energy has slope 0 ≤ D: exp(-E) is not integrable."""
    far = far_field(_Fn(lambda x: torch.zeros(x.shape[0], dtype=x.dtype)))
    assert not far.rises and far.min_log_slope == 0.0 and "slope" in far.reason


@pytest.mark.parametrize("a, rises", [(1.5, True), (0.9, False)])
def test_radial_log_energies_pass_iff_the_slope_exceeds_two_in_2d(a: float, rises: bool) -> None:
    """a log(1 + |x|²) is a density in 2-D iff 2a > 2: a = 1.5 passes, a = 0.9 fails."""
    far = far_field(_Radial(a))
    assert far.rises is rises
    # Between radii 100 and 1000 the slope is 2a up to log(1 + r⁻²) terms of order 1e-4.
    assert far.min_log_slope == pytest.approx(2 * a, abs=1e-3)


def test_the_threshold_is_the_dimension() -> None:
    """Slope 2.4 is enough in 2-D but not in 3-D: the probe compares with D."""
    assert far_field(_Radial(1.2, dim=2)).rises
    three = far_field(_Radial(1.2, dim=3), generator=torch.Generator().manual_seed(0))
    assert three.dim == 3 and not three.rises and "D = 3" in three.reason


def test_the_far_energy_must_exceed_the_reference() -> None:
    """An energy that rises steeply enough but stays below the reference energy fails."""
    energy = _Radial(1.5)  # about 20.7 at radius 1000
    assert far_field(energy, reference_energy=10.0).rises
    far = far_field(energy, reference_energy=100.0)
    assert not far.rises and far.reference_energy == 100.0
    assert "reference" in far.reason and "100" in far.reason


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_nan_or_minus_inf_far_away_fails(bad: float) -> None:
    """NaN or -inf at the largest radius fails, whatever the slope elsewhere."""
    def fn(x):
        r2 = x.pow(2).sum(1)
        return torch.where(r2 > 500.0**2, torch.full_like(r2, bad), r2)

    far = far_field(_Fn(fn))
    assert not far.rises and far.min_log_slope == -math.inf
    assert "NaN or -inf" in far.reason


def test_plus_inf_far_away_counts_as_rising() -> None:
    """+inf at the two largest radii (inf - inf is NaN) still counts as rising."""
    def fn(x):
        r2 = x.pow(2).sum(1)
        return torch.where(r2 > 50.0**2, torch.full_like(r2, math.inf), r2)

    far = far_field(_Fn(fn))
    assert far.rises and far.min_log_slope == math.inf
    assert far.min_energy[-2:] == [math.inf, math.inf]


@pytest.mark.parametrize("radii", [(10.0,), (100.0, 10.0), (10.0, 10.0), (-1.0, 10.0),
                                   (0.0, 10.0), (10.0, math.inf)])
def test_bad_radii_are_rejected(radii) -> None:
    """Fewer than two radii, non-increasing, or non-positive or infinite radii raise."""
    with pytest.raises(ValueError, match="radii"):
        far_field(_std_normal(), radii=radii)


def test_the_mode_is_restored_and_the_probe_runs_in_eval_mode() -> None:
    """The energy is called in eval mode and left in the mode it was in."""
    energy = _Fn(lambda x: x.pow(2).sum(1))
    energy.train()
    assert far_field(energy).rises
    assert energy.training and energy.seen_training and not any(energy.seen_training)
    energy.eval()
    far_field(energy)
    assert not energy.training


def test_the_center_moves_the_rays() -> None:
    """Rays start at ``center``: a bowl far from the origin is probed from its bottom."""
    c = torch.tensor([1e4, 0.0], dtype=torch.float64)
    energy = _Fn(lambda x: (x - c).pow(2).sum(1))
    far = far_field(energy, c, radii=(1.0, 10.0))
    # Exactly r² along every ray from c, up to float64 rounding near 1e4.
    assert far.min_energy == pytest.approx([1.0, 100.0], rel=1e-9)
