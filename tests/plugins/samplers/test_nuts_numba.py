"""The numba bookkeeping of NUTS against the torch reference transition."""

from __future__ import annotations

import pytest
import torch
from ebmcore_samplers import _nuts_numba
from ebmcore_samplers._nuts_tree import transition
from ebmcore_samplers.metric import Metric

from ebmcore.energy import Energy


class RowCountingGaussian(Energy):
    """Zero-mean Gaussian with precision ``prec`` that records the rows of every call."""

    def __init__(self, prec: torch.Tensor) -> None:
        super().__init__()
        self.prec = prec
        self.event_shape = (prec.shape[0],)
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.linalg.vecdot(x @ self.prec, x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.rows.append(x.shape[0])
        g = x @ self.prec
        return 0.5 * torch.linalg.vecdot(g, x), g


def _case(dtype: torch.dtype, kind: str) -> tuple[RowCountingGaussian, torch.Tensor, Metric]:
    gen = torch.Generator().manual_seed(0)
    d = 5
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    cov = a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64)
    energy = RowCountingGaussian(torch.linalg.inv(cov).to(dtype))
    x = torch.randn(48, d, generator=gen, dtype=dtype)
    mass = {"identity": None, "diag": 1.0 / cov.diagonal(),
            "dense": torch.linalg.inv(cov)}[kind]
    return energy, x, Metric(mass, d, dtype, x.device)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["identity", "diag", "dense"])
def test_numba_builds_the_reference_trees(dtype: torch.dtype, kind: str) -> None:
    # Same seed, same random numbers: the trees (depths, gradient counts, divergences) are
    # identical and the states agree to rounding, transition after transition.
    energy, x, metric = _case(dtype, kind)
    e, g = energy.energy_and_grad(x)
    eps = torch.full((x.shape[0],), 0.5, dtype=dtype)
    states = {"torch": (x, e, g), "numba": (x, e, g)}
    gens = {k: torch.Generator().manual_seed(3) for k in states}
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    for _ in range(8):
        infos, rows = {}, {}
        for k in states:
            energy.rows.clear()
            *states[k], infos[k] = transition(energy, *states[k], eps, metric, 6, 1000.0,
                                              gens[k], bookkeeping=k)
            rows[k] = sum(energy.rows)
        for key in ("tree_depth", "n_grad", "divergent"):
            assert torch.equal(infos["torch"][key], infos["numba"][key]), key
        torch.testing.assert_close(infos["torch"]["accept_prob"], infos["numba"]["accept_prob"],
                                   **tol)
        for a, b in zip(states["torch"], states["numba"], strict=True):
            torch.testing.assert_close(a, b, **tol)
        # No wasted gradients: each row the energy saw is a leapfrog step of a growing tree.
        assert rows["numba"] == int(infos["numba"]["n_grad"].sum())
        assert rows["torch"] >= rows["numba"]


def test_rows_follow_the_compaction() -> None:
    # An energy whose value depends on the row gets take_rows(index) with the rows that are
    # still growing, in the order of the batch it is handed.
    class PerRow(Energy):
        event_shape = (2,)

        def __init__(self, scale: torch.Tensor) -> None:
            super().__init__()
            self.scale = scale
            self.seen: list[torch.Tensor] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x ** 2).sum(1) / self.scale

        def take_rows(self, index: torch.Tensor) -> PerRow:
            self.seen.append(index.clone())
            return PerRow(self.scale[index])

    scale = torch.logspace(-1, 1, 32, dtype=torch.float64)
    energy = PerRow(scale)
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    e, g = energy.energy_and_grad(x)
    eps = 0.4 * scale.sqrt()
    outs = {}
    for k in ("torch", "numba"):
        gen = torch.Generator().manual_seed(2)
        outs[k] = transition(energy, x, e, g, eps, Metric(None, 2, x.dtype, x.device), 8,
                             1000.0, gen, bookkeeping=k)
    assert energy.seen and all(bool((i[1:] > i[:-1]).all()) for i in energy.seen)
    for a, b in zip(outs["torch"][:3], outs["numba"][:3], strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(outs["torch"][3]["n_grad"], outs["numba"][3]["n_grad"])


def test_support_and_bad_bookkeeping() -> None:
    assert _nuts_numba.supports(torch.zeros(2, 2))
    assert not _nuts_numba.supports(torch.zeros(2, 2, dtype=torch.float16))
    energy, x, metric = _case(torch.float64, "identity")
    e, g = energy.energy_and_grad(x)
    with pytest.raises(ValueError, match="bookkeeping"):
        transition(energy, x, e, g, torch.ones(48, dtype=x.dtype), metric, 3, 1000.0,
                   torch.Generator(), bookkeeping="fast")
