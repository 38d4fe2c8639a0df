"""The confining wall: its formula, its fit to data, and that it makes any network a density."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_models.confinement import Confinement

import ebmcore
from ebmcore.evaluate import grid_evaluation
from ebmcore.evaluation.tails import far_field
from ebmcore.testing import check_energy


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _falling_mlp(confine: bool) -> ebmcore.Energy:
    """An mlp whose network falls linearly along +x: E_net(x) = -50 x (hidden = [] is linear)."""
    model = ebmcore.create("model", "mlp", dim=2, hidden=[], confine=confine)
    with torch.no_grad():
        model.net[0].weight.copy_(torch.tensor([[-50.0, 0.0]]))
        model.net[0].bias.zero_()
    return model


def test_unfitted_wall_is_a_standard_normal_base():
    """Before any fit the wall is |x|^2 / 2, so an untrained model is already a density."""
    wall = Confinement((3,))
    x = torch.randn(6, 3, generator=_gen())
    torch.testing.assert_close(wall(x), 0.5 * x.pow(2).sum(1))
    assert not bool(wall.fitted)


def test_fit_sets_centre_radius_and_width_from_the_data():
    """Centre = mean, radius = farthest point, width = factor x pooled std."""
    x = torch.randn(500, 2, generator=_gen(), dtype=torch.float64) * torch.tensor([1.0, 3.0]) + 2
    wall = Confinement((2,), width_factor=0.5)
    wall.fit(x)
    centre = x.mean(0)
    torch.testing.assert_close(wall.center.double(), centre, rtol=0, atol=1e-6)
    assert float(wall.radius) == pytest.approx(float((x - centre).norm(dim=1).max()), rel=1e-6)
    assert float(wall.width) == pytest.approx(0.5 * math.sqrt(float(x.var(0).mean())), rel=1e-6)
    torch.testing.assert_close(wall.low.double(), x.amin(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(wall.high.double(), x.amax(0), rtol=0, atol=1e-6)
    assert bool(wall.fitted)
    assert float(wall(x.float()).max()) < 1e-9  # every fitted point is inside (to rounding)


def test_the_box_walls_off_what_the_ball_leaves_beside_square_data():
    """Exact values: the ball around [-1, 1]^2 reaches radius sqrt(2); past the square's edge
    the box part, |x - clamp(x, low, high)|^2 / (2 w^2), rises at once."""
    wall = Confinement((2,))
    wall.fit(torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]]))
    wall.width.fill_(0.5)
    x = torch.tensor([[0.5, -0.5], [1.2, 0.0], [0.0, -1.4], [2.0, 0.0]])
    ball = (2.0 - math.sqrt(2.0)) ** 2  # only the last point is beyond the ball
    expected = torch.tensor([0.0, 0.04, 0.16, 1.0 + ball]) / (2 * 0.25)
    torch.testing.assert_close(wall(x), expected)


def test_a_wall_saved_without_a_box_loads_with_none():
    """A state dict from before the box (no low/high) loads, and its energies are unchanged."""
    old = Confinement((2,))
    old.fit(torch.randn(300, 2, generator=_gen()))
    state = {k: v for k, v in old.state_dict().items() if k not in ("low", "high")}
    wall = Confinement((2,))
    wall.load_state_dict(state)
    assert bool(torch.isinf(wall.low).all() and torch.isinf(wall.high).all())
    x = torch.randn(50, 2, generator=_gen(1)) * 4
    ball = (x - wall.center).norm(dim=1).sub(wall.radius).clamp_min(0)
    torch.testing.assert_close(wall(x), 0.5 * (ball / wall.width).square())


def test_wall_is_zero_inside_and_quadratic_outside():
    """Exact values on a hand-set wall: 0 within the radius, (d - R)^2 / (2 w^2) beyond it."""
    wall = Confinement((2,))
    wall.radius.fill_(2.0)
    wall.width.fill_(0.5)
    x = torch.tensor([[0.0, 0.0], [1.5, 1.0], [3.0, 0.0], [0.0, -5.0]])
    torch.testing.assert_close(wall(x), torch.tensor([0.0, 0.0, 2.0, 18.0]))


def test_wall_gradient_matches_autograd_and_is_finite_at_the_centre():
    """The mlp's gradient (autograd through the wall) is finite at the wall's centre too."""
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    x = torch.zeros(3, 2)
    g = model.grad(x)
    assert torch.isfinite(g).all()
    check_energy(model, (2,))


def test_fit_rejects_bad_data():
    """Wrong shapes, a single point, identical points and non-finite values raise early."""
    wall = Confinement((2,))
    with pytest.raises(ValueError, match="shape"):
        wall.fit(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        wall.fit(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="not all equal"):
        wall.fit(torch.ones(4, 2))
    with pytest.raises(ValueError, match="finite|non-finite"):
        wall.fit(torch.tensor([[0.0, 1.0], [math.nan, 0.0]]))
    with pytest.raises(ValueError, match="wall_width"):
        Confinement((2,), width_factor=0.0)
    with pytest.raises(ValueError, match="confine must be .* got 'yes'"):
        ebmcore.create("model", "mlp", dim=2, confine="yes")
    with pytest.raises(TypeError, match="confine"):
        ebmcore.create("model", "mlp", dim=2, confine=1)


def test_a_falling_network_is_a_density_only_with_the_wall():
    """The same falling weights: not normalisable bare, normalisable with the wall."""
    data = torch.randn(1000, 2, generator=_gen())
    bare, walled = _falling_mlp(False), _falling_mlp(True)
    walled.fit_confinement(data)
    assert not far_field(bare, 0.0, (10.0, 100.0, 1000.0)).rises
    assert far_field(walled, 0.0, (10.0, 100.0, 1000.0)).rises
    assert walled.normalisable and not bare.normalisable
    assert not grid_evaluation(bare, None, bounds=(-5, 5), resolution=64).normalisable
    assert grid_evaluation(walled, None, bounds=(-5, 5), resolution=64).normalisable
    with pytest.raises(AssertionError, match="density"):
        check_energy(_claiming(bare), (2,))


def _claiming(model: ebmcore.Energy) -> ebmcore.Energy:
    model.normalisable = True
    return model


@pytest.mark.parametrize("name, kwargs, shape", [
    ("mlp", {"dim": 2, "hidden": [16]}, (2,)),
    ("conv", {"in_channels": 1, "image_size": 8, "channels": [4, 8]}, (1, 8, 8)),
])
def test_wall_travels_in_the_state_dict(name, kwargs, shape):
    """A fitted wall is saved and loaded with the weights; a fresh model adopts it."""
    model = ebmcore.create("model", name, **kwargs)
    model.fit_confinement(torch.randn(200, *shape, generator=_gen()))
    fresh = ebmcore.create("model", name, **kwargs)
    assert not fresh.confinement_fitted
    fresh.load_state_dict(model.state_dict())
    assert fresh.confinement_fitted
    x = torch.randn(4, *shape, generator=_gen(1))
    torch.testing.assert_close(fresh(x), model(x))


@pytest.mark.parametrize("confine", ["gaussian", "wall"])
def test_conv_confinement_confines_images(confine):
    """The conv energy rises far from its data like the mlp does, with either confinement."""
    model = ebmcore.create("model", "conv", in_channels=1, image_size=8, channels=[4],
                           confine=confine)
    model.fit_confinement(torch.rand(200, 1, 8, 8, generator=_gen()))
    assert model.normalisable
    probe = far_field(model, 0.5, (10.0, 100.0, 1000.0), n_directions=8)
    assert probe.rises, probe.reason
