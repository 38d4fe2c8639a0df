"""ebmcore.testing.check_model: passes on the built-in models, fails on each broken one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ebmcore
from ebmcore import Energy
from ebmcore.testing import build_model, check_model


class SmallNet(Energy):
    """A working model: a one-layer net plus a fixed quadratic wall."""

    def __init__(self, dim: int, width: int = 8) -> None:
        super().__init__()
        self.event_shape = (dim,)
        self.normalisable = True
        self.net = nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) + 0.5 * x.pow(2).sum(1)


class KeepsDim(SmallNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, None]  # (B, 1), not (B,)


class FixedSize(SmallNet):
    def __init__(self, dim: int, width: int = 8) -> None:
        super().__init__(2, width)  # ignores the data's dimension


class NoParameters(Energy):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.event_shape = (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.pow(2).sum(1)


class WrongGrad(SmallNet):
    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return x  # forgets the network's part


class StateOutsideStateDict(SmallNet):
    """A random shift drawn at construction and kept as a plain attribute."""

    def __init__(self, dim: int, width: int = 8) -> None:
        super().__init__(dim, width)
        self.shift = torch.randn(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x - self.shift.to(x.dtype))


class TakesShape(SmallNet):
    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape[0])


def test_a_working_model_passes():
    model = check_model(SmallNet, (2,), data_shape="dim")
    assert isinstance(model, SmallNet) and model.event_shape == (2,)
    check_model(TakesShape, (3,), data_shape="event_shape")


def test_the_component_says_how_the_shape_is_passed():
    component = ebmcore.Component("small", SmallNet, "A small net.", data_shape="dim")
    assert build_model(component, (4,)).event_shape == (4,)
    check_model(component, (2,), params={"width": 4})


@pytest.mark.parametrize("broken, message", [
    (KeepsDim, "expected"),
    (FixedSize, "declares event_shape"),
    (NoParameters, "no trainable parameters"),
    (WrongGrad, "grad"),
    (StateOutsideStateDict, "state_dict"),
])
def test_a_broken_model_fails(broken, message):
    with pytest.raises(AssertionError, match=message):
        check_model(broken, (2,), data_shape="dim")


def test_builtin_models_pass_by_name():
    # built from the data's shape as the registered components' data_shape says
    check_model("mlp", (2,), params={"hidden": [16, 16]})
    check_model("conv", (1, 8, 8), params={"channels": [4]})


def test_bad_data_shape_is_named():
    with pytest.raises(ValueError, match="data_shape"):
        build_model(SmallNet, (2,), data_shape="size")
