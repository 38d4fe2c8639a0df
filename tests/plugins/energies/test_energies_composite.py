"""Composition energies: sum (product of experts), tempered and callable."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.testing.energy_checks import check_energy


def _x(b: int = 6, d: int = 2) -> torch.Tensor:
    return torch.randn(b, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_sum_of_gaussian_experts_is_their_product() -> None:
    a = ebmcore.create("energy", "gaussian", mean=[1.0, 0.0], diag=[0.5, 2.0])
    b = ebmcore.create("energy", "harmonic", stiffness=[2.0, 0.5], center=[-1.0, 1.0])
    poe = ebmcore.create("energy", "sum", energies=[a, b]).double()
    # Product of N(1, 0.5) N(-1, 1/2) in x0 and N(0, 2) N(1, 2) in x1.
    prec = torch.tensor([2.0 + 2.0, 0.5 + 0.5], dtype=torch.float64)
    mean = torch.tensor([(2.0 * 1 + 2.0 * -1) / 4.0, (0.5 * 0 + 0.5 * 1) / 1.0],
                        dtype=torch.float64)
    x = _x()
    e, g = poe.energy_and_grad(x)
    torch.testing.assert_close(g, (x - mean) * prec)
    # Energies differ from the product's quadratic form by one constant.
    quad = 0.5 * ((x - mean) ** 2 * prec).sum(1)
    diff = e - quad
    torch.testing.assert_close(diff, diff[:1].expand_as(diff))
    check_energy(poe, (2,))


def test_sum_adds_a_confining_term_to_ackley() -> None:
    poe = ebmcore.create("energy", "sum", energies=[
        ebmcore.create("energy", "ackley"), ebmcore.create("energy", "harmonic", stiffness=0.1)])
    check_energy(poe, (2,), dtypes=(torch.float64,))


def test_tempered_divides_energy_and_gradient() -> None:
    base = ebmcore.create("energy", "double_well").double()
    hot = ebmcore.create("energy", "tempered", energy=base, temperature=4.0)
    x = _x()
    e, g = hot.energy_and_grad(x)
    torch.testing.assert_close(e, base(x) / 4.0)
    torch.testing.assert_close(g, base.grad(x) / 4.0)
    torch.testing.assert_close(hot.grad(x), g)
    assert hot.event_shape == (2,)
    check_energy(hot, (2,))


def test_callable_energy_uses_autograd_and_checks_shapes() -> None:
    energy = ebmcore.create("energy", "callable", fn=lambda x: (x**4).sum(1), event_shape=(3,))
    x = _x(d=3)
    torch.testing.assert_close(energy.grad(x), 4 * x**3)
    check_energy(energy, (3,))
    with pytest.raises(ValueError, match=r"expects \(3,\)"):
        energy(torch.zeros(2, 4))
    bad = ebmcore.create("energy", "callable", fn=lambda x: x.sum(1, keepdim=True))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        bad(torch.zeros(2, 4))


def test_callable_energy_without_event_shape_accepts_any_shape() -> None:
    energy = ebmcore.create("energy", "callable", fn=lambda x: x.flatten(1).pow(2).sum(1))
    assert energy.event_shape is None
    assert energy(torch.ones(3, 2, 2)).tolist() == [4.0, 4.0, 4.0]
    check_energy(energy, (2, 2), dtypes=(torch.float64,))


def test_composites_move_with_to() -> None:
    base = ebmcore.create("energy", "gaussian", mean=[0.0, 1.0])
    poe = ebmcore.create("energy", "sum", energies=[base, ebmcore.create("energy", "ring")])
    poe = poe.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in poe.buffers())
    assert poe.parts[0] is base  # modules convert in place, like any nn.Module
