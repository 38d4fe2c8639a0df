"""Tests of MEADS (``meads``), ChEES-HMC's tuning-free generalized-HMC sibling."""

from __future__ import annotations

import pytest
import torch
from ebmcore_samplers.meads import MEADS, max_eigenvalue
from test_chees import Z_MAX, _diagonal_gaussian, _moment_z, _run, _start

import ebmcore
from ebmcore.testing.sampler_checks import GaussianTarget, correlated_gaussian


def test_registered() -> None:
    assert isinstance(ebmcore.create("sampler", "meads", n_folds=2), MEADS)


@pytest.mark.parametrize(("kwargs", "name", "error"), [
    ({"n_folds": 0}, "n_folds", ValueError),
    ({"n_folds": 2.5}, "n_folds", TypeError),
    ({"step_size_multiplier": 0.0}, "step_size_multiplier", ValueError),
    ({"damping_slowdown": -1.0}, "damping_slowdown", ValueError),
])
def test_invalid_parameters_are_named(kwargs: dict, name: str, error: type) -> None:
    with pytest.raises(error, match=name):
        MEADS(**kwargs)


@pytest.mark.parametrize("n_chains", [4, 6])
def test_chains_must_fill_the_folds(gauss2: GaussianTarget, n_chains: int) -> None:
    with pytest.raises(ValueError, match="n_folds=4 equal folds of at least 2"):
        MEADS().init(gauss2, _start(gauss2, n_chains, 0))


def test_chains_without_spread_are_refused(gauss2: GaussianTarget) -> None:
    with pytest.raises(ValueError, match="spread of the chains"):
        MEADS().init(gauss2, torch.zeros(8, 2, dtype=torch.float64))


def test_max_eigenvalue_estimates_the_leading_eigenvalue() -> None:
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([3.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    rows = torch.randn(4000, 4, generator=gen, dtype=torch.float64) * scales
    # tr(C^2) / tr(C) = (81 + 3) / (9 + 3) = 7 for C = diag(9, 1, 1, 1)
    assert float(max_eigenvalue(rows)) == pytest.approx(7.0, rel=0.1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        max_eigenvalue(rows[:1])


def test_adapt_sets_only_the_next_fold_from_this_fold(gauss2: GaussianTarget) -> None:
    sampler = MEADS(n_folds=4)
    state = sampler.init(gauss2, _start(gauss2, 16, 0))
    gen = torch.Generator().manual_seed(1)
    state, info = sampler.step(gauss2, state, gen)
    before = (state.step_size.clone(), state.sigma.clone(), state.alpha.clone())
    state = sampler.adapt(state, info, 0, 100)  # fold 0's chains set fold 1's parameters
    changed = [i for i in range(4) if not torch.equal(state.sigma[i], before[1][i])]
    assert changed == [1]
    rows = state.fold == 0
    expected = state.x[rows].std(0, correction=0)
    assert torch.allclose(state.sigma[1], expected)
    assert torch.equal(state.step_size[[0, 2, 3]], before[0][[0, 2, 3]])


def test_one_gradient_per_step_and_the_slice_stays_in_range(gauss2: GaussianTarget) -> None:
    sampler = MEADS(n_folds=2)
    state = sampler.init(gauss2, _start(gauss2, 8, 0))
    gen = torch.Generator().manual_seed(2)
    for i in range(30):
        state, info = sampler.step(gauss2, state, gen)
        state = sampler.adapt(state, info, i, 30)
        assert torch.equal(info["n_grad"], torch.ones(8, dtype=torch.long))
        assert bool((state.slice.abs() <= 1.0).all())
        assert bool(torch.isfinite(state.momentum).all())


def test_moments_of_a_correlated_2d_gaussian() -> None:
    target = correlated_gaussian(2, correlation=0.9, scale_ratio=3.0)
    result = _run(target, MEADS(), burn_in=600, n_steps=1200)
    z_mean, z_cov = _moment_z(result.trajectory, target)
    assert z_mean < Z_MAX and z_cov < Z_MAX


def test_moments_of_an_ill_conditioned_10d_gaussian() -> None:
    target = _diagonal_gaussian(torch.logspace(-1, 1, 10))
    result = _run(target, MEADS(), burn_in=600, n_steps=1200)
    z_mean, z_cov = _moment_z(result.trajectory, target)
    assert z_mean < Z_MAX and z_cov < Z_MAX
    d = result.diagnostics
    assert d["inverse_mass"].shape == (10,) and d["fold_inverse_mass"].shape == (4, 10)
    # the scales come from the chains: within a factor 3 of the truth with 8 chains a fold
    ratio = d["inverse_mass"] / target.cov.diagonal()
    assert bool(((ratio > 1 / 3) & (ratio < 3)).all())


def test_state_dict_round_trip() -> None:
    s = MEADS(n_folds=2, step_size_multiplier=0.3, damping_slowdown=2.0)
    t = MEADS()
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()


def test_a_flat_energy_is_refused() -> None:
    class Flat(GaussianTarget):
        def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(x.shape[0], dtype=x.dtype), torch.zeros_like(x)

    flat = Flat(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="not all zero gradients"):
        MEADS(n_folds=2).init(flat, _start(flat, 4, 0))


def test_meads_runs_compiled_with_the_eager_draws() -> None:
    """``backend="compiled"``: burn-in eagerly, the kept steps as compiled blocks (short
    ones here, to compile fast), from the same random numbers as the eager loop."""
    target = _diagonal_gaussian(torch.logspace(-1, 1, 3))
    x0 = _start(target, 16, 3)
    runs = {}
    for backend in ("torch", "compiled"):
        sampler = MEADS()
        sampler.compile_block = 2
        runs[backend] = sampler.sample(target, x0, 20, burn_in=30, return_trajectory=True,
                                       backend=backend,
                                       generator=torch.Generator().manual_seed(4))
    eager, comp = runs["torch"], runs["compiled"]
    assert comp.diagnostics["backend"] == "compiled"
    torch.testing.assert_close(comp.trajectory, eager.trajectory, rtol=1e-9, atol=1e-9)
    for key in ("acceptance", "divergences", "n_grad_sampling"):
        torch.testing.assert_close(comp.diagnostics[key], eager.diagnostics[key])
