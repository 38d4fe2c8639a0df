"""The neural energies: shapes, gradients, argument checks, spectral norm, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ebmcore
from ebmcore.checkpoint import build_model, load_model, save_model

ACTIVATIONS = ["silu", "relu", "elu", "gelu", "tanh", "softplus", "leaky_relu"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_models_with_documented_parameters():
    assert {"mlp", "conv"} <= set(ebmcore.names("model"))
    for name in ("mlp", "conv"):
        info = ebmcore.describe("model", name)
        assert info["summary"] and all(p["doc"] for p in info["parameters"])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_shapes_and_activation(activation):
    model = ebmcore.create("model", "mlp", dim=3, hidden=[16, 8], activation=activation)
    assert isinstance(model, ebmcore.Energy) and model.event_shape == (3,)
    e = model(torch.randn(5, 3, generator=_gen()))
    assert e.shape == (5,) and e.dtype == torch.float32
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 16), (16, 8), (8, 1)]
    acts = [m for m in model.net if not isinstance(m, nn.Linear)]
    assert len(acts) == 2 and all(type(a) is type(acts[0]) for a in acts)


def test_mlp_without_hidden_layers_or_wall_is_linear():
    model = ebmcore.create("model", "mlp", dim=2, hidden=[], confine=False)
    x = torch.randn(4, 2, generator=_gen())
    layer = model.net[0]
    torch.testing.assert_close(model(x), (x @ layer.weight.T + layer.bias).squeeze(-1))


def test_activation_names_are_normalised_and_validated():
    ebmcore.create("model", "mlp", dim=2, activation="Leaky-ReLU")
    with pytest.raises(ValueError, match="activation must be one of silu, relu") as info:
        ebmcore.create("model", "mlp", dim=2, activation="swish")
    assert "leaky_relu" in str(info.value) and "'swish'" in str(info.value)
    with pytest.raises(TypeError, match="activation must be a string"):
        ebmcore.create("model", "conv", activation=nn.ReLU)


def test_mlp_argument_checks():
    with pytest.raises(ValueError, match="dim"):
        ebmcore.create("model", "mlp", dim=0)
    with pytest.raises(TypeError, match="dim"):
        ebmcore.create("model", "mlp", dim=2.0)
    with pytest.raises(TypeError, match="hidden must be a list or tuple"):
        ebmcore.create("model", "mlp", dim=2, hidden=64)
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        ebmcore.create("model", "mlp", dim=2, hidden=[8, 0])
    with pytest.raises(TypeError, match="spectral_norm"):
        ebmcore.create("model", "mlp", dim=2, spectral_norm="yes")


def test_conv_argument_checks():
    with pytest.raises(ValueError, match="channels must hold at least one"):
        ebmcore.create("model", "conv", channels=[])
    with pytest.raises(ValueError, match="in_channels"):
        ebmcore.create("model", "conv", in_channels=0)
    with pytest.raises(TypeError, match="image_size"):
        ebmcore.create("model", "conv", image_size=(28, 28, 3))
    with pytest.raises(ValueError, match=r"image_size\[1\]"):
        ebmcore.create("model", "conv", image_size=(28, 0))


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_conv_shapes(channels, size):
    model = ebmcore.create("model", "conv", in_channels=channels, image_size=size,
                           channels=[8, 16, 16])
    assert model.event_shape == (channels, size, size)
    e = model(torch.randn(4, channels, size, size, generator=_gen()))
    assert e.shape == (4,)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][0]
    assert head.in_features == 16 * (size // 4) ** 2  # two stride-2 halvings
    assert not [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_conv_non_square_and_odd_sizes():
    model = ebmcore.create("model", "conv", image_size=(15, 20), channels=[4, 4, 4])
    assert model(torch.randn(2, 1, 15, 20, generator=_gen())).shape == (2,)


@pytest.mark.parametrize("name, params, shape", [
    ("mlp", {"dim": 3}, (3,)),
    ("conv", {"channels": [4, 8]}, (1, 28, 28)),
])
def test_wrong_input_shape_names_the_event_shape(name, params, shape):
    model = ebmcore.create("model", name, **params)
    bad = torch.zeros(2, *[s + 1 for s in shape])
    with pytest.raises(ValueError, match=f"event shape {tuple(shape)}".replace("(", r"\(")
                       .replace(")", r"\)")):
        model(bad)
    with pytest.raises(ValueError, match="got"):
        model(torch.zeros(*shape))  # a missing batch dimension


@pytest.mark.parametrize("name, params, shape", [
    ("mlp", {"dim": 3, "hidden": [16, 16]}, (3,)),
    ("conv", {"channels": [4, 8], "image_size": 8}, (1, 8, 8)),
])
def test_each_energy_ignores_the_rest_of_the_batch(name, params, shape):
    model = ebmcore.create("model", name, **params)
    x = torch.randn(6, *shape, generator=_gen(), dtype=torch.float64)
    model = model.double()
    batched = model(x)
    single = torch.cat([model(x[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, single)


@pytest.mark.parametrize("name, params, shape", [
    ("mlp", {"dim": 3, "hidden": [8, 8]}, (3,)),
    ("conv", {"channels": [2, 3], "image_size": 4}, (1, 4, 4)),
])
def test_gradient_matches_finite_differences_and_autograd(name, params, shape):
    torch.manual_seed(0)
    model = ebmcore.create("model", name, **params).double()
    x = torch.randn(3, *shape, generator=_gen(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(model, (x.clone().requires_grad_(),))
    e, g = model.energy_and_grad(x)
    x_ = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(model(x_).sum(), x_)
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(model.grad(x), expected)
    torch.testing.assert_close(e, model(x))
    assert not x.requires_grad


@pytest.mark.parametrize("name, params", [
    ("mlp", {"dim": 4, "hidden": [32, 32]}),
    ("conv", {"channels": [4, 8], "image_size": 8}),
])
def test_spectral_norm_bounds_each_weight(name, params):
    torch.manual_seed(0)
    model = ebmcore.create("model", name, spectral_norm=True, **params)
    shape = model.event_shape
    model.train()
    for _ in range(30):  # each training forward runs one power iteration
        model(torch.zeros(1, *shape))
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    for layer in layers:
        matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        top = torch.linalg.matrix_norm(matrix.double(), ord=2)
        assert abs(float(top) - 1.0) < 1e-3, float(top)


@pytest.mark.parametrize("name, params, shape", [
    ("mlp", {"dim": 2, "hidden": [16, 16], "spectral_norm": True}, (2,)),
    ("conv", {"channels": [4, 8], "image_size": 28}, (1, 28, 28)),
    ("conv", {"channels": [4, 8], "in_channels": 3, "image_size": 32, "spectral_norm": True},
     (3, 32, 32)),
])
def test_models_round_trip_bit_for_bit(tmp_path, name, params, shape):
    torch.manual_seed(0)
    model = ebmcore.create("model", name, **params)
    model(torch.randn(2, *shape))  # advances spectral-norm power iteration state
    model.eval()
    path = save_model(tmp_path / "m.pt", model,
                      spec={"kind": "model", "name": name, "params": params})
    torch.manual_seed(1)
    other = ebmcore.create("model", name, **params).eval()
    load_model(path, other)
    rebuilt = build_model(path).eval()
    for copy in (other, rebuilt):
        for key, value in model.state_dict().items():
            assert torch.equal(value, copy.state_dict()[key]), key
    x = torch.randn(3, *shape, generator=_gen())
    assert torch.equal(model(x), other(x)) and torch.equal(model(x), rebuilt(x))


def test_conv_takes_the_data_shape_as_event_shape():
    model = ebmcore.create("model", "conv", event_shape=[3, 8, 6], channels=[2])
    assert model.event_shape == (3, 8, 6)
    same = ebmcore.create("model", "conv", event_shape=(1, 8, 8), in_channels=1,
                          image_size=8, channels=[2])
    assert same.event_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="in_channels=3 disagrees"):
        ebmcore.create("model", "conv", event_shape=(1, 8, 8), in_channels=3)
    with pytest.raises(ValueError, match="image_size"):
        ebmcore.create("model", "conv", event_shape=(1, 8, 8), image_size=[8, 6])
    with pytest.raises(TypeError, match="event_shape must be"):
        ebmcore.create("model", "conv", event_shape=(8, 8))
    assert ebmcore.create("model", "conv", channels=[2]).event_shape == (1, 28, 28)
