"""The Gaussian mixture's numba face: specialised per shape, exact against torch in float64."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from ebmcore_energies.mixture import mixture_face_functions

import ebmcore


def _mixture(d: int, k: int, seed: int) -> ebmcore.Energy:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 4
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64) * 0.3
    covs = a @ a.transpose(1, 2) + 0.2 * torch.eye(d, dtype=torch.float64)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    weights = weights / weights.sum()
    return ebmcore.create("energy", "gaussian_mixture", means=means, covs=covs,
                          weights=weights).double()


@pytest.mark.parametrize(("d", "k"), [(1, 1), (1, 4), (2, 8), (3, 5)])
def test_face_matches_torch_near_and_far_from_the_modes(d: int, k: int) -> None:
    energy = _mixture(d, k, seed=10 * d + k)
    face = energy.numba_face()
    f_energy, f_grad = numba.njit(face.energy), numba.njit(face.grad)
    g = torch.Generator().manual_seed(1)
    # At the means most components are negligible (the face skips them); far away none is.
    points = torch.cat([energy.means + 0.05 * torch.randn(k, d, generator=g, dtype=torch.float64),
                        torch.randn(50, d, generator=g, dtype=torch.float64) * 6])
    e_ref, g_ref = energy.energy_and_grad(points)
    out = np.empty(d)
    for x, e, gr in zip(points.numpy(), e_ref.numpy(), g_ref.numpy(), strict=True):
        assert f_energy(x, face.params) == pytest.approx(e, rel=1e-12, abs=1e-12)
        f_grad(x, face.params, out)
        np.testing.assert_allclose(out, gr, rtol=1e-10, atol=1e-10 * (1 + np.abs(gr).max()))


def test_faces_are_memoised_per_shape() -> None:
    assert mixture_face_functions(2, 8) is mixture_face_functions(2, 8)
    assert mixture_face_functions(2, 8)[1] is not mixture_face_functions(2, 3)[1]
    # Two mixtures of one shape share faces (and so the kernels compiled for them).
    assert _mixture(2, 3, 0).numba_face().grad is _mixture(2, 3, 1).numba_face().grad
