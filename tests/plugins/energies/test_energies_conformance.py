"""Every built-in analytic energy passes the conformance kit in float32 and float64."""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore
from ebmcore.testing.energy_checks import EnergyCheckSkipped, check_energy

MIXTURE_FULL = dict(
    means=[[-2.0, 0.0], [2.0, 1.0], [0.0, 3.0]],
    covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.4]], [[1.0, -0.2], [-0.2, 0.6]]],
    weights=[0.2, 0.5, 0.3],
)

CASES_2D = [
    ("gaussian", dict(mean=[0.5, -1.0], cov=[[1.0, 0.6], [0.6, 2.0]])),
    ("gaussian", dict(mean=[0.5, -1.0], precision=[[1.0, 0.3], [0.3, 2.0]])),
    ("gaussian", dict(mean=[0.5, -1.0], diag=[0.5, 2.0])),
    ("gaussian_mixture", MIXTURE_FULL),
    ("gaussian_mixture", dict(means=[[-2.0, 0.0], [2.0, 1.0]], covs=[0.5, 1.5])),
    ("gaussian_mixture", dict(means=[[-1.0, 0.0], [1.0, 1.0]], covs=[[0.5, 2.0], [1.0, 0.3]])),
    ("double_well", dict(barrier=3.0, center=1.5)),
    ("harmonic", dict(stiffness=[1.0, 4.0], center=[1.0, -1.0])),
    ("rastrigin", dict()),
    ("rosenbrock", dict()),
    ("ackley", dict()),
    ("himmelblau", dict()),
    ("styblinski_tang", dict()),
    ("banana", dict(curvature=0.3, scale=1.5)),
    ("funnel", dict(dim=2)),
    ("ring", dict(radius=2.0, width=0.4)),
]

CASES_HIGH = [
    ("gaussian", dict(mean=[0.0] * 5, cov=(torch.eye(5) + 0.3).tolist()), (5,)),
    ("gaussian_mixture", dict(means=[[0.0, 1.0, 2.0], [1.0, -1.0, 0.0]], covs=0.7), (3,)),
    ("rosenbrock", dict(dim=4), (4,)),
    ("rastrigin", dict(dim=6), (6,)),
    ("ackley", dict(dim=5), (5,)),
    ("funnel", dict(), (10,)),
    ("banana", dict(dim=4), (4,)),
    ("ring", dict(dim=3), (3,)),
    ("styblinski_tang", dict(dim=3), (3,)),
    ("double_well", dict(dim=3), (3,)),
]

CASES_1D = [
    ("harmonic", dict(dim=1, stiffness=2.0)),
    ("ring", dict(dim=1, radius=1.5, width=0.5)),
    ("double_well", dict(dim=1)),
]


def _id(case: tuple) -> str:
    return f"{case[0]}-" + "-".join(sorted(case[1])) if case[1] else case[0]


@pytest.mark.parametrize("case", CASES_2D, ids=[_id(c) for c in CASES_2D])
def test_2d_energy_passes_the_kit(case: tuple) -> None:
    name, params = case
    check_energy(ebmcore.create("energy", name, **params), (2,))


@pytest.mark.parametrize("case", CASES_1D, ids=[_id(c) for c in CASES_1D])
def test_1d_energy_passes_the_kit(case: tuple) -> None:
    name, params = case
    check_energy(ebmcore.create("energy", name, **params), (1,))


@pytest.mark.parametrize("case", CASES_HIGH, ids=[f"{c[0]}-{c[2][0]}d" for c in CASES_HIGH])
def test_high_dim_energy_passes_the_kit(case: tuple) -> None:
    name, params, shape = case
    energy = ebmcore.create("energy", name, **params)
    declares = energy.log_z is not None or energy.has_exact_sampler
    if declares:
        with pytest.warns(EnergyCheckSkipped, match="D=.*> 2"):
            check_energy(energy, shape)
    else:
        check_energy(energy, shape)


def test_kit_runs_with_one_dtype_and_other_batch_sizes() -> None:
    energy = ebmcore.create("energy", "banana")
    check_energy(energy, (2,), dtypes=(torch.float64,), batch_sizes=(3, 11),
                 generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_computation_follows_the_input_dtype(dtype: torch.dtype) -> None:
    energy = ebmcore.create("energy", "gaussian_mixture", **MIXTURE_FULL)  # float32 buffers
    x = torch.randn(4, 2, dtype=dtype)
    e, g = energy.energy_and_grad(x)
    assert e.dtype == dtype and g.dtype == dtype and energy(x).dtype == dtype


def test_sample_dtype_follows_the_parameters() -> None:
    energy = ebmcore.create("energy", "funnel", dim=3)
    assert energy.sample(5).dtype == torch.get_default_dtype()
    assert energy.double().sample(5).dtype == torch.float64


@pytest.mark.parametrize("name", ["ackley", "ring"])
def test_gradient_at_the_origin_is_finite_and_zero(name: str) -> None:
    energy = ebmcore.create("energy", name, dim=3).double()
    x = torch.zeros(2, 3, dtype=torch.float64)
    e, g = energy.energy_and_grad(x)
    assert torch.isfinite(e).all()
    assert torch.equal(g, torch.zeros_like(g))
    assert torch.equal(energy.grad(x), torch.zeros_like(g))
    x_ = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(energy(x_).sum(), x_)
    assert torch.equal(auto, torch.zeros_like(auto))
    face = energy.numba_face()
    out = [1.0, 1.0, 1.0]
    import numpy as np

    out = np.array(out)
    face.grad(np.zeros(3), face.params, out)  # the plain-Python face, uncompiled
    assert out.tolist() == [0.0, 0.0, 0.0]
    assert math.isfinite(face.energy(np.zeros(3), face.params))


def test_wrong_event_shape_is_rejected_with_the_expected_shape() -> None:
    energy = ebmcore.create("energy", "rastrigin", dim=3)
    with pytest.raises(ValueError, match=r"expects \(3,\)"):
        energy(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        energy.grad(torch.zeros(3))
