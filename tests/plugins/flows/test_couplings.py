"""The built-in couplings: exact OT against brute force, Sinkhorn draws, missing POT."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
from ebmcore_flows.couplings import (
    ExactOTCoupling,
    IndependentCoupling,
    SinkhornCoupling,
    squared_distances,
)

import ebmcore
from ebmcore.errors import MissingDependencyError
from ebmcore.testing import check_coupling


@pytest.mark.parametrize("coupling", [IndependentCoupling(), ExactOTCoupling(),
                                      SinkhornCoupling()], ids=repr)
def test_conformance(coupling):
    check_coupling(coupling)
    check_coupling(coupling, event_shape=(1, 3, 3), batch_size=5)


def _brute_force(cost: torch.Tensor) -> tuple[tuple[int, ...], float]:
    n = cost.shape[0]
    return min(((perm, sum(cost[i, perm[i]].item() for i in range(n)))
                for perm in itertools.permutations(range(n))), key=lambda pc: pc[1])


@pytest.mark.parametrize("batch", [2, 3, 5, 7])
def test_exact_ot_finds_the_optimal_permutation(batch):
    coupling = ExactOTCoupling()
    gen = torch.Generator().manual_seed(batch)
    for _ in range(5):
        x0 = torch.randn(batch, 3, generator=gen, dtype=torch.float64)
        x1 = torch.randn(batch, 3, generator=gen, dtype=torch.float64)
        rows, cols = coupling.indices(x0, x1)
        assert rows.tolist() == list(range(batch))
        best, best_cost = _brute_force(squared_distances(x0, x1))
        assert tuple(cols.tolist()) == best
        paired0, paired1 = coupling.pair(x0, x1)
        assert (paired0 - paired1).square().sum().item() == pytest.approx(best_cost)


def test_exact_ot_never_costs_more_than_the_drawn_pairs():
    gen = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(256, 4, generator=gen), torch.randn(256, 4, generator=gen) + 1.0
    ot0, ot1 = ExactOTCoupling().pair(x0, x1)
    assert (ot0 - ot1).square().sum() < 0.8 * (x0 - x1).square().sum()
    assert torch.equal(ot0, x0)  # noise keeps its order; only the data are permuted
    assert torch.equal(ot1.sort(dim=0).values, x1.sort(dim=0).values)


def test_exact_ot_refuses_a_plan_it_did_not_finish():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(64, 2, generator=gen), torch.randn(64, 2, generator=gen)
    with pytest.raises(RuntimeError, match="max_iterations"):
        ExactOTCoupling(max_iterations=3).pair(x0, x1)


def test_sinkhorn_plan_has_uniform_marginals():
    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(12, 2, generator=gen), torch.randn(12, 2, generator=gen)
    plan = SinkhornCoupling(reg=0.1, max_iterations=5000).plan(x0, x1)
    torch.testing.assert_close(plan.sum(1), torch.full((12,), 1 / 12, dtype=torch.float64))
    torch.testing.assert_close(plan.sum(0), torch.full((12,), 1 / 12, dtype=torch.float64),
                               rtol=1e-4, atol=1e-6)


def test_sinkhorn_pairs_are_reproducible_and_drawn_from_the_plan():
    gen = torch.Generator().manual_seed(4)
    x0, x1 = torch.randn(6, 2, generator=gen), torch.randn(6, 2, generator=gen)
    coupling = SinkhornCoupling(reg=0.5)
    first = coupling.indices(x0, x1, torch.Generator().manual_seed(9))
    again = coupling.indices(x0, x1, torch.Generator().manual_seed(9))
    assert torch.equal(first[1], again[1])
    # Each noise row's datum follows that row of the plan: frequencies within 5 standard errors.
    draws = 2000
    stream = torch.Generator().manual_seed(5)
    counts = torch.zeros(6, 6, dtype=torch.float64)
    for _ in range(draws):
        rows, cols = coupling.indices(x0, x1, stream)
        counts[rows, cols] += 1
    want = coupling.plan(x0, x1) * 6  # the conditional law of a row's datum
    freq = counts / draws
    se = (want * (1 - want) / draws).sqrt().clamp_min(1e-3)
    assert ((freq - want).abs() / se).max().item() < 5.0


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_tends_to_exact_ot_as_the_regularisation_vanishes():
    gen = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(8, 2, generator=gen), torch.randn(8, 2, generator=gen)
    exact = ExactOTCoupling().indices(x0, x1)[1]
    sharp = SinkhornCoupling(reg=1e-3, max_iterations=20_000)
    assert torch.equal(sharp.indices(x0, x1, torch.Generator().manual_seed(0))[1], exact)


def test_couplings_without_pot_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)  # makes `import ot` raise ImportError
    for cls in (ExactOTCoupling, SinkhornCoupling):
        with pytest.raises(MissingDependencyError, match=r'pip install "ebmcore\[flows\]"'):
            cls()
    with pytest.raises(ImportError, match="'pot'"):
        ebmcore.create("coupling", "exact_ot")
    assert isinstance(ebmcore.create("coupling", "independent"), IndependentCoupling)


@pytest.mark.parametrize("params, match", [({"reg": 0}, "reg"), ({"reg": "big"}, "reg"),
                                           ({"max_iterations": 0}, "max_iterations"),
                                           ({"method": "greedy"}, "method"),
                                           ({"normalize_cost": 1}, "normalize_cost")])
def test_sinkhorn_refuses_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SinkhornCoupling(**params)


def test_pairs_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        ExactOTCoupling().pair(torch.zeros(4, 2), torch.zeros(4, 3))
