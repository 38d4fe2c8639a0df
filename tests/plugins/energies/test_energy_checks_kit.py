"""The conformance kit (ebmcore/testing/energy_checks.py) catches broken energies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ebmcore
from ebmcore.energy import Energy, NumbaFace
from ebmcore.testing.energy_checks import check_energy


class _Quadratic(Energy):
    """A correct 2-D energy ``½ s ‖x‖²`` with knobs that break one property at a time."""

    event_shape = (2,)

    def __init__(self, *, grad_factor: float = 1.0, log_z_shift: float = 0.0,
                 sample_scale: float = 1.0, global_rng: bool = False,
                 face: str | None = None, batch_leak: bool = False) -> None:
        super().__init__()
        self.register_buffer("s", torch.tensor(2.0))
        self.grad_factor, self.log_z_shift = grad_factor, log_z_shift
        self.sample_scale, self.global_rng = sample_scale, global_rng
        self.face, self.batch_leak = face, batch_leak

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = 0.5 * self.s * (x * x).sum(1)
        return e + 1e-3 * x.mean() if self.batch_leak else e

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.grad_factor * self.s * x

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(x), self.grad(x)

    @property
    def log_z(self) -> float:
        return math.log(2 * math.pi / float(self.s)) + self.log_z_shift

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = None if self.global_rng else generator
        z = torch.randn(n, 2, generator=gen, dtype=self.s.dtype)
        return self.sample_scale * z / self.s.sqrt()

    def numba_face(self) -> NumbaFace | None:
        if self.face is None:
            return None
        energy = _numpy_energy if self.face == "numpy" else _good_energy
        grad = _wrong_grad if self.face == "wrong_grad" else _good_grad
        return NumbaFace(energy, grad, np.array([float(self.s)]), 2)


def _good_energy(x, p):
    return 0.5 * p[0] * (x[0] * x[0] + x[1] * x[1])


def _good_grad(x, p, out):
    out[0] = p[0] * x[0]
    out[1] = p[0] * x[1]


def _wrong_grad(x, p, out):
    out[0] = p[0] * x[0]
    out[1] = p[0] * x[0]


def _numpy_energy(x, p):
    return 0.5 * p[0] * np.dot(x, x)


def test_the_correct_reference_passes() -> None:
    check_energy(_Quadratic(face="good"), (2,))


@pytest.mark.parametrize("kwargs, message", [
    (dict(grad_factor=1.001), "grad vs autograd"),
    (dict(log_z_shift=0.01), "log_z"),
    (dict(sample_scale=1.05), "exact samples disagree with quadrature"),
    (dict(global_rng=True), "global RNG"),
    (dict(face="wrong_grad"), "numba face grad"),
    (dict(face="numpy"), "uses globals"),
    (dict(batch_leak=True), "one point at a time"),
])
def test_a_broken_property_fails_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_energy(_Quadratic(**kwargs), (2,))


def test_wrong_event_shape_and_wrong_output_shape_fail() -> None:
    with pytest.raises(AssertionError, match="event_shape"):
        check_energy(ebmcore.create("energy", "harmonic", dim=3), (2,))
    bad = ebmcore.create("energy", "callable", fn=lambda x: x.sum(1).to(torch.float64))
    with pytest.raises(AssertionError, match="returned torch.float64"):
        check_energy(bad, (2,), dtypes=(torch.float32,))


def test_non_finite_energies_fail() -> None:
    bad = ebmcore.create("energy", "callable", fn=lambda x: x.sum(1).log())
    with pytest.raises(AssertionError, match="non-finite"):
        check_energy(bad, (2,))


def test_closure_faces_are_rejected() -> None:
    scale = 2.0

    def closure(x, p):
        return scale * x[0]

    class WithClosure(_Quadratic):
        def numba_face(self) -> NumbaFace:
            return NumbaFace(closure, _good_grad, np.array([2.0]), 2)

    with pytest.raises(AssertionError, match="closure"):
        check_energy(WithClosure(), (2,))


def _sized_face(d: int):
    def energy(x, p):
        s = 0.0
        for i in range(d):
            s += p[0] * x[i] * x[i]
        return s

    def grad(x, p, out):
        for i in range(d):
            out[i] = 2.0 * p[0] * x[i]

    return energy, grad


def test_integer_size_closures_are_accepted() -> None:
    # Sizes frozen per shape are the documented exception (see gaussian_mixture's face).
    class Sized(_Quadratic):
        def numba_face(self) -> NumbaFace:
            energy, grad = _sized_face(2)
            return NumbaFace(energy, grad, np.array([1.0]), 2)

    check_energy(Sized(), (2,))


class _Falling(Energy):
    """``√(1 + ‖x‖²) - 2 softplus(x₀)``: a bowl near the origin, falling like ``-‖x‖`` along +x₀."""

    event_shape = (2,)

    def __init__(self, *, claim: bool) -> None:
        super().__init__()
        self.normalisable = claim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 + (x * x).sum(1)).sqrt() - 2 * torch.nn.functional.softplus(x[:, 0])


class _HeavyTailed(Energy):
    """``a log(1 + ‖x‖²)``, a density in 2-D for ``a > 1`` (a bivariate Student-t like tail)."""

    event_shape = (2,)
    normalisable = True

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.log1p((x * x).sum(1))


def test_a_false_density_claim_fails() -> None:
    """An energy that declares normalisable = True but falls far away fails on "density"."""
    with pytest.raises(AssertionError, match="_Falling.*density.*log-log slope"):
        check_energy(_Falling(claim=True), (2,))


def test_the_same_energy_without_the_claim_passes() -> None:
    """Without normalisable = True nothing asks the falling energy to be a density."""
    check_energy(_Falling(claim=False), (2,))


def test_a_true_density_claim_passes() -> None:
    """A proper density with normalisable = True passes, even heavy-tailed (slope 3 > D = 2)."""
    check_energy(_HeavyTailed(1.5), (2,))


def test_a_heavy_tail_too_heavy_for_a_density_fails() -> None:
    """a log(1 + ‖x‖²) with a = 0.9 (slope 1.8 < D = 2) is not a density: the claim fails."""
    with pytest.raises(AssertionError, match="density"):
        check_energy(_HeavyTailed(0.9), (2,))
