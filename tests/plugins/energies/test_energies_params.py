"""Bad parameters raise early, naming the parameter."""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore

NAN = math.nan

BAD = [
    # (name, params, exception, text the message must contain)
    ("gaussian", dict(mean=[0.0, 0.0], cov=[[1.0, 2.0], [2.0, 1.0]]), ValueError, "cov"),
    ("gaussian", dict(mean=[0.0, 0.0], cov=[[1.0, 0.5], [0.2, 1.0]]), ValueError, "cov"),
    ("gaussian", dict(mean=[0.0, 0.0], cov=[[1.0, 0.0]]), ValueError, "cov"),
    ("gaussian", dict(mean=[0.0, 0.0], cov=[[1.0, 0.0], [0.0, NAN]]), ValueError, "cov"),
    ("gaussian", dict(mean=[0.0, 0.0], precision=[[-1.0, 0.0], [0.0, 1.0]]), ValueError,
     "precision"),
    ("gaussian", dict(mean=[0.0, 0.0], diag=[1.0, -1.0]), ValueError, "diag"),
    ("gaussian", dict(mean=[0.0, 0.0], diag=[1.0, 1.0, 1.0]), ValueError, "diag"),
    ("gaussian", dict(mean=[0.0, math.inf]), ValueError, "mean"),
    ("gaussian", dict(mean=[[0.0, 0.0]]), ValueError, "mean"),
    ("gaussian", dict(mean=[0.0], cov=[[1.0]], diag=[1.0]), ValueError, "cov, diag"),
    ("gaussian", dict(mean="zero"), TypeError, "mean"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0], [1.0, 1.0]], weights=[1.5, -0.5]), ValueError,
     "weights"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0], [1.0, 1.0]], weights=[0.3, 0.3]), ValueError,
     "weights"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0], [1.0, 1.0]], weights=[1.0]), ValueError,
     "weights"),
    ("gaussian_mixture", dict(means=[0.0, 0.0]), ValueError, "means"),
    ("gaussian_mixture", dict(means=[[0.0, NAN]]), ValueError, "means"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0], [1.0, 1.0]], covs=-1.0), ValueError, "covs"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0], [1.0, 1.0]], covs=[1.0, 0.0]), ValueError,
     "covs"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0], [1.0, 1.0]], covs=[1.0, 1.0, 1.0]),
     ValueError, "covs"),
    ("gaussian_mixture",
     dict(means=[[0.0, 0.0], [1.0, 1.0]],
          covs=[[[1.0, 0.0], [0.0, 1.0]], [[1.0, 3.0], [3.0, 1.0]]]),
     ValueError, "covs[1]"),
    ("gaussian_mixture", dict(means=[[0.0, 0.0]], covs=[[[1.0, 0.0], [0.0, 1.0]]] * 2),
     ValueError, "covs"),
    ("double_well", dict(barrier=0.0), ValueError, "barrier"),
    ("double_well", dict(center=NAN), ValueError, "center"),
    ("double_well", dict(dim=0), ValueError, "dim"),
    ("double_well", dict(dim=2.5), TypeError, "dim"),
    ("harmonic", dict(stiffness=-1.0), ValueError, "stiffness"),
    ("harmonic", dict(dim=2, stiffness=[1.0, 2.0, 3.0]), ValueError, "stiffness"),
    ("harmonic", dict(dim=2, stiffness=[1.0, 0.0]), ValueError, "stiffness"),
    ("harmonic", dict(dim=2, center=[1.0]), ValueError, "center"),
    ("rastrigin", dict(a=-10.0), ValueError, "a"),
    ("rosenbrock", dict(dim=1), ValueError, "dim"),
    ("rosenbrock", dict(b=0.0), ValueError, "b"),
    ("rosenbrock", dict(a=math.inf), ValueError, "a"),
    ("ackley", dict(b=-0.2), ValueError, "b"),
    ("ackley", dict(a="20"), TypeError, "a"),
    ("himmelblau", dict(scale=0.0), ValueError, "scale"),
    ("styblinski_tang", dict(scale=-1.0), ValueError, "scale"),
    ("banana", dict(scale=0.0), ValueError, "scale"),
    ("banana", dict(curvature=NAN), ValueError, "curvature"),
    ("banana", dict(dim=1), ValueError, "dim"),
    ("funnel", dict(scale=-3.0), ValueError, "scale"),
    ("funnel", dict(dim=1), ValueError, "dim"),
    ("ring", dict(radius=0.0), ValueError, "radius"),
    ("ring", dict(width=math.inf), ValueError, "width"),
    ("tempered", dict(energy=None, temperature=1.0), TypeError, "energy"),
    ("callable", dict(fn=3), TypeError, "fn"),
    ("callable", dict(fn=lambda x: x.sum(1), event_shape=(0,)), ValueError, "event_shape"),
    ("sum", dict(energies=[]), ValueError, "energies"),
    ("sum", dict(energies=[1.0]), TypeError, "energies[0]"),
]


@pytest.mark.parametrize("case", BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD)])
def test_bad_parameters_raise_naming_the_parameter(case: tuple) -> None:
    name, params, exc, text = case
    with pytest.raises(exc) as info:
        ebmcore.create("energy", name, **params)
    assert text in str(info.value)


def test_tempered_rejects_non_positive_temperatures() -> None:
    base = ebmcore.create("energy", "harmonic")
    for t in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            ebmcore.create("energy", "tempered", energy=base, temperature=t)


def test_sum_rejects_mismatched_event_shapes() -> None:
    a = ebmcore.create("energy", "harmonic", dim=2)
    b = ebmcore.create("energy", "harmonic", dim=3)
    with pytest.raises(ValueError, match="energies must share one event shape"):
        ebmcore.create("energy", "sum", energies=[a, b])


def test_tensor_parameters_are_accepted_and_not_aliased() -> None:
    mean = torch.tensor([1.0, 2.0], dtype=torch.float64)
    energy = ebmcore.create("energy", "gaussian", mean=mean, cov=torch.eye(2))
    mean[0] = 100.0
    assert float(energy.mean[0]) == 1.0


def test_unknown_parameter_is_an_invalid_parameters_error() -> None:
    with pytest.raises(ebmcore.InvalidParametersError, match="barrier"):
        ebmcore.create("energy", "double_well", height=2.0)


def test_scalar_parameters_are_reread_after_they_change() -> None:
    # The closed forms cache 0-d parameters as floats (AnalyticEnergy._number); the cache
    # must follow load_state_dict, in-place edits and dtype moves.
    energy = ebmcore.create("energy", "double_well", barrier=2.0, center=1.0)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))

    def expected(h: float, c: float, x: torch.Tensor = x) -> torch.Tensor:
        u = x[:, 0] / c
        return 4 * h * u * (u * u - 1) / c

    torch.testing.assert_close(energy.grad(x)[:, 0], expected(2.0, 1.0))
    state = energy.state_dict()
    state["barrier"] = torch.tensor(3.0)
    energy.load_state_dict(state)
    torch.testing.assert_close(energy.grad(x)[:, 0], expected(3.0, 1.0))
    energy.center.fill_(1.5)
    torch.testing.assert_close(energy.energy_and_grad(x)[1][:, 0], expected(3.0, 1.5))
    wide = energy.double()
    torch.testing.assert_close(wide.grad(x.double())[:, 0], expected(3.0, 1.5, x.double()))
