"""The built-in field models: mlp_field and unet_field."""

from __future__ import annotations

import pytest
import torch
from ebmcore_models.fields import MLPField, TimeEmbedding, UNetField

from ebmcore.field import Field
from ebmcore.registry import get_registry


def test_fields_are_registered_with_their_data_shape():
    registry = get_registry()
    assert registry.get("model", "mlp_field") is MLPField
    assert registry.get("model", "unet") is UNetField
    assert registry.component("model", "mlp_field")[0].data_shape == "dim"
    assert registry.component("model", "unet_field")[0].data_shape == "event_shape"


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
def test_mlp_field_shapes_times_and_gradients(kind):
    field = MLPField(dim=3, hidden=(16, 16), time_embedding=kind)
    assert isinstance(field, Field) and field.event_shape == (3,) and field.energy() is None
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    v = field(x, 0.4)
    assert v.shape == x.shape
    torch.testing.assert_close(v, field(x, torch.full((6,), 0.4)))
    torch.testing.assert_close(v, field(x, torch.tensor(0.4)))
    assert not torch.allclose(v, field(x, 0.9)), "the field must depend on t"
    per_row = field(x, torch.linspace(0, 1, 6))
    torch.testing.assert_close(per_row[2:3], field(x[2:3], 0.4))
    per_row.square().sum().backward()
    assert all(p.grad is not None for p in field.parameters())


def test_mlp_field_defaults_and_flat_images():
    field = MLPField(dim=2)
    assert [m.out_features for m in field.net if isinstance(m, torch.nn.Linear)] == \
        [256, 256, 256, 2]
    assert any(isinstance(m, torch.nn.SiLU) for m in field.net)
    images = MLPField(dim=64, hidden=(8,))
    x = torch.rand(3, 1, 8, 8)
    assert images(x, 0.5).shape == (3, 1, 8, 8)  # flattened in, shaped back out
    with pytest.raises(ValueError, match="x must hold 64 values per point"):
        images(torch.rand(3, 10), 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        field(torch.ones(2, 2, dtype=torch.long), 0.5)


def test_fourier_features_are_fixed_by_the_state_dict():
    a, b = MLPField(2, (8,), time_embedding="fourier"), MLPField(2, (8,),
                                                                time_embedding="fourier")
    torch.testing.assert_close(a.time.freqs, b.time.freqs)
    assert "time.freqs" in a.state_dict()


def test_input_fourier_features_widen_the_first_layer_and_keep_gradients():
    field = MLPField(2, (8,), input_features=5, input_scale=2.0)
    assert field.net[0].in_features == 2 + 10 + field.time.size
    assert field.input_freqs.shape == (2, 5) and "input_freqs" in field.state_dict()
    torch.testing.assert_close(field.input_freqs, MLPField(2, (8,), input_features=5,
                                                           input_scale=2.0).input_freqs)
    # the features are sin and cos of x @ w: the output's gradient matches finite differences
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    field = field.double()
    assert torch.autograd.gradcheck(lambda y: field(y, 0.3), (x,))
    with pytest.raises(ValueError, match="input_scale must be a positive number"):
        MLPField(2, input_features=4, input_scale=0.0)
    with pytest.raises(ValueError, match="input_features"):
        MLPField(2, input_features=-1)


def test_bad_field_arguments_name_the_argument():
    with pytest.raises(ValueError, match="time_embedding must be one of"):
        MLPField(2, time_embedding="learned")
    with pytest.raises(ValueError, match="time_dim must be even"):
        TimeEmbedding(7)
    with pytest.raises(ValueError, match="fourier_scale"):
        TimeEmbedding(8, "fourier", scale=0.0)
    with pytest.raises(ValueError, match="hidden"):
        MLPField(2, hidden=())
    with pytest.raises(ValueError, match=r"event_shape must be an image shape \(C, H, W\)"):
        UNetField(event_shape=(64,))
    with pytest.raises(ValueError, match="channels"):
        UNetField(event_shape=(1, 8, 8), channels=())


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 7, 9)])
def test_unet_field_keeps_the_image_shape(shape):
    field = UNetField(event_shape=shape, channels=(8, 16))
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    v = field(x, 0.5)
    assert v.shape == x.shape
    assert bool((v == 0).all()), "the head starts at zero, so the untrained field is zero"
    v.sum().backward()  # the zero head still passes gradients to itself
    assert field.head[-1].weight.grad is not None
    with pytest.raises(ValueError, match="x must have shape"):
        field(torch.randn(2, 1, 5, 5), 0.5)


def test_unet_field_depends_on_time_and_space_after_a_step():
    torch.manual_seed(0)
    field = UNetField(event_shape=(1, 8, 8), channels=(8, 16))
    opt = torch.optim.SGD(field.parameters(), lr=0.1)
    x = torch.randn(4, 1, 8, 8)
    (field(x, torch.rand(4)) - x).square().mean().backward()
    opt.step()
    with torch.no_grad():
        early, late = field(x, 0.1), field(x, 0.9)
    assert not torch.allclose(early, late), "the time embedding must reach the output"
    assert three_levels_work()


def three_levels_work() -> bool:
    """A three-level U-Net on 28x28 (28 -> 14 -> 7 and back) keeps the shape."""
    field = UNetField(event_shape=(1, 28, 28), channels=(4, 8, 8))
    return field(torch.randn(1, 1, 28, 28), 0.3).shape == (1, 1, 28, 28)
