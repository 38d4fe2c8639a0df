"""The U-Net energy: a proper ebmcore.Energy whose gradient is what its form says."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_losses.energy_matching import EnergyMatching
from ebmcore_models.unet_energy import UNetEnergy

from ebmcore.energy import Energy
from ebmcore.registry import get_registry
from ebmcore.testing import check_energy

SHAPE = (1, 8, 8)


def _trained_like(form: str, seed: int = 0, base: bool = True) -> UNetEnergy:
    """A small U-Net energy with every weight random (the zero-started last convolution
    too), so that nothing in the checks passes because the output is zero."""
    torch.manual_seed(seed)
    energy = UNetEnergy(SHAPE, channels=(4, 8), form=form, time_dim=8, base=base)
    torch.nn.init.normal_(energy.net.head[-1].weight, std=0.2)
    torch.nn.init.normal_(energy.net.head[-1].bias, std=0.2)
    return energy


def test_unet_energy_is_registered_with_the_image_shape():
    registry = get_registry()
    assert registry.get("model", "unet_energy") is UNetEnergy
    assert registry.component("model", "unet_energy")[0].data_shape == "event_shape"


@pytest.mark.parametrize("form", ["dot", "l2"])
def test_unet_energy_honours_the_energy_contract(form):
    energy = _trained_like(form)
    assert isinstance(energy, Energy) and energy.event_shape == SHAPE
    assert not energy.normalisable
    check_energy(energy, SHAPE, batch_sizes=(1, 3))


@pytest.mark.parametrize(("form", "base"), [("dot", True), ("l2", True), ("dot", False)])
def test_unet_energy_gradient_is_its_form_and_matches_finite_differences(form, base):
    energy = _trained_like(form, seed=1, base=base).double()
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grad = energy.grad(x)
    # the form's closed expression through the U-Net's output f and its Jacobian J
    x_ = x.clone().requires_grad_(True)
    f = energy.output(x_)
    weight = x if form == "dot" else f.detach()
    (jt,) = torch.autograd.grad(f, x_, grad_outputs=weight)
    expected = (-(f.detach() + jt) if form == "dot" else jt) + (x if base else 0.0)
    torch.testing.assert_close(grad, expected)
    value = (-(x * f.detach()).flatten(1).sum(1) if form == "dot"
             else 0.5 * f.detach().flatten(1).square().sum(1))
    torch.testing.assert_close(energy(x), value + (0.5 * x.flatten(1).square().sum(1)
                                                   if base else 0.0))
    # central differences along a few pixels of the first image
    h = 1e-6
    for pixel in [(0, 0, 0), (0, 3, 4), (0, 7, 7)]:
        step = torch.zeros_like(x)
        step[(0, *pixel)] = h
        numeric = (energy(x + step) - energy(x - step))[0] / (2 * h)
        torch.testing.assert_close(numeric, grad[(0, *pixel)], rtol=1e-6, atol=1e-8)


def test_the_base_is_the_standard_normal_the_paths_start_from():
    energy = _trained_like("dot").double()
    base = energy.base_energy()
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.testing.assert_close(base(x), 0.5 * x.flatten(1).square().sum(1))
    assert base.log_z == pytest.approx(32 * math.log(2 * math.pi))
    draws = base.sample(4000, torch.Generator().manual_seed(7))
    assert draws.shape == (4000, *SHAPE) and draws.dtype == torch.float64
    # mean 0 and variance 1 per pixel, within 5 standard errors of their estimates
    assert draws.mean().abs() < 5 / math.sqrt(draws.numel())
    assert (draws.var() - 1).abs() < 5 * math.sqrt(2 / draws.numel())
    bare = _trained_like("dot", base=False)
    assert bare.base_energy() is None
    torch.testing.assert_close(energy.float()(x.float()) - bare(x.float()),
                               0.5 * x.float().flatten(1).square().sum(1))


def test_an_untrained_dot_energy_is_its_base_and_one_energy_matching_step_moves_it():
    torch.manual_seed(0)
    energy = UNetEnergy(SHAPE, channels=(4, 8), time_dim=8)
    x = torch.rand(16, *SHAPE, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(energy(x), 0.5 * x.flatten(1).square().sum(1))
    loss = EnergyMatching(coupling="independent", switch_step=None)
    loss.set_generator(torch.Generator().manual_seed(4))
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-2)
    out = loss(energy, x)
    out.loss.backward()
    assert energy.net.head[-1].weight.grad.abs().sum() > 0  # the field's loss reaches E
    optimizer.step()
    assert not torch.allclose(energy.grad(x), x)  # no longer the base's gradient alone


def test_an_l2_energy_starts_with_a_gradient():
    torch.manual_seed(0)
    energy = UNetEnergy(SHAPE, channels=(4, 8), form="l2", time_dim=8, base=False)
    x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(5))
    assert energy.grad(x).abs().sum() > 0


def test_unet_energy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="form must be one of dot, l2"):
        UNetEnergy(SHAPE, form="cube")
    with pytest.raises(TypeError, match="base must be True or False"):
        UNetEnergy(SHAPE, base="yes")
    with pytest.raises(ValueError, match="event_shape must be an image shape"):
        UNetEnergy((64,))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        UNetEnergy(SHAPE, channels=(4, 8))(torch.rand(2, 64))
