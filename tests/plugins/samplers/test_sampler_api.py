"""One sampler API (issue #24): MALA's mass matrix, ``step_size=None``, shared argument checks,
exact gradient counts, a non-finite start, and the fused backends' refusals."""

from __future__ import annotations

import pytest
import torch
from core_sampler_helpers import Counting
from ebmcore_samplers.adaptation import find_reasonable_step_size
from ebmcore_samplers.hmc import HMC
from ebmcore_samplers.mala import MALA
from ebmcore_samplers.metric import Metric

import ebmcore
from ebmcore.errors import BackendUnavailableError
from ebmcore.testing.sampler_checks import GaussianTarget, check_sampler, correlated_gaussian

DIM = 4


def _cov() -> torch.Tensor:
    return correlated_gaussian(DIM, correlation=0.9, scale_ratio=10.0).cov


@pytest.mark.parametrize("mass", [
    pytest.param(lambda: 1.0 / _cov().diagonal(), id="diag"),
    pytest.param(lambda: torch.linalg.inv(_cov()), id="dense"),
    pytest.param(lambda: "diag", id="adapt-diag"),
    pytest.param(lambda: "dense", id="adapt-dense"),
])
def test_preconditioned_mala_keeps_a_correlated_gaussian(mass) -> None:
    value = mass()
    kw = ({"adapt_mass": value} if isinstance(value, str)
          else {"mass": value, "adapt_mass": None})
    r = check_sampler(MALA(0.05, jitter=0.1, **kw), dim=DIM, correlation=0.9,
                      scale_ratio=10.0, n_chains=100, n_steps=300, burn_in=300)
    d = r["result"].diagnostics
    assert 0.45 < float(d["acceptance"].mean()) < 0.7  # adapted toward 0.574
    inv = d["inverse_mass"]
    assert inv.shape == ((DIM,) if kw.get("adapt_mass") == "diag" or (
        "mass" in kw and kw["mass"].ndim == 1) else (DIM, DIM))


def test_a_dense_mass_makes_mala_take_the_targets_scale() -> None:
    # With M^-1 equal to the covariance every direction is whitened: the adapted step is
    # of order one and far larger than without a mass.
    target = correlated_gaussian(DIM, correlation=0.9, scale_ratio=10.0)
    x0 = target.sample(64, torch.Generator().manual_seed(0))
    steps = {}
    for name, kw in {"identity": {"adapt_mass": None},
                     "dense": {"mass": torch.linalg.inv(target.cov), "adapt_mass": None}
                     }.items():
        r = MALA(**kw).sample(target, x0, 50, burn_in=200,
                              generator=torch.Generator().manual_seed(1))
        steps[name] = float(r.diagnostics["step_size"].mean())
    assert steps["dense"] > 0.3 and steps["dense"] > 10 * steps["identity"]


def test_mala_mass_paths_agree_step_for_step() -> None:
    # The identity, a unit diagonal and a diagonal written as a matrix are the same kernel.
    target = correlated_gaussian(3)
    x0 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    runs = {}
    for name, mass in {"none": None, "ones": torch.ones(3, dtype=torch.float64),
                       "diag": m, "diag-matrix": torch.diag(m)}.items():
        runs[name] = MALA(0.2, mass=mass, adapt_mass=None, adapt_step_size=False).sample(
            target, x0, 20, generator=torch.Generator().manual_seed(1)).samples
    torch.testing.assert_close(runs["ones"], runs["none"], rtol=0, atol=1e-12)
    torch.testing.assert_close(runs["diag-matrix"], runs["diag"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("target_accept", [0.75, 0.85])
def test_hmc_without_a_step_size_adapts_to_the_target_acceptance(target_accept) -> None:
    target = correlated_gaussian(10, scale_ratio=4.0)
    x0 = target.sample(64, torch.Generator().manual_seed(0))
    r = HMC(n_leapfrog=5, target_accept=target_accept).sample(
        target, x0, 200, burn_in=400, generator=torch.Generator().manual_seed(1))
    assert abs(float(r.diagnostics["acceptance"].mean()) - target_accept) < 0.05


def test_mala_without_a_step_size_adapts_to_its_target_acceptance() -> None:
    target = correlated_gaussian(10, scale_ratio=4.0)
    x0 = target.sample(64, torch.Generator().manual_seed(0))
    r = MALA().sample(target, x0, 200, burn_in=400, generator=torch.Generator().manual_seed(1))
    assert abs(float(r.diagnostics["acceptance"].mean()) - 0.574) < 0.05


def test_the_step_size_search_works_with_every_metric() -> None:
    # On N(0, s^2 I) with the mass M = 1 / s^2 (diagonal or dense), x = s y and p = q / s
    # turn the leapfrog into the unit Gaussian's with the same step: the search must find
    # the unit Gaussian's steps from the same random numbers.
    s = 3.0
    wide = GaussianTarget(torch.zeros(2), torch.eye(2) * s * s)
    unit = GaussianTarget(torch.zeros(2), torch.eye(2))
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def search(energy: GaussianTarget, pts: torch.Tensor, mass: object) -> torch.Tensor:
        e, g = energy.energy_and_grad(pts)
        metric = Metric(mass, 2, pts.dtype, pts.device)
        return find_reasonable_step_size(energy, pts, e, g, 1.0, metric,
                                         torch.Generator().manual_seed(2))

    ref = search(unit, x, None)
    diag = search(wide, x * s, torch.full((2,), 1.0 / s**2, dtype=torch.float64))
    dense = search(wide, x * s, torch.eye(2, dtype=torch.float64) / s**2)
    assert ref.shape == (32,) and bool((ref > 0).all())
    torch.testing.assert_close(diag, ref, rtol=1e-9, atol=0)
    torch.testing.assert_close(dense, diag, rtol=1e-9, atol=0)


@pytest.mark.parametrize("cls", [MALA, HMC])
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mass": [[1.0, 2.0], [2.0, 1.0]]}, "mass.*positive definite"),
    ({"mass": [[1.0, 0.5], [0.0, 1.0]]}, "mass.*symmetric"),
    ({"mass": [1.0, 0.0]}, "mass"),
    ({"adapt_mass": "full"}, "adapt_mass"),
    ({"jitter": 1.0}, "jitter"),
    ({"target_accept": 1.0}, "target_accept"),
])
def test_shared_arguments_are_checked_alike(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("cls", [MALA, HMC])
def test_old_adapt_mass_spellings_warn(cls: type) -> None:
    with pytest.warns(DeprecationWarning, match="adapt_mass"):
        assert cls(0.1, adapt_mass=True).adapt_mass == "diag"
    with pytest.warns(DeprecationWarning, match="adapt_mass"):
        assert cls(0.1, adapt_mass=False).adapt_mass is None


def test_hmc_inv_mass_is_a_deprecated_spelling_of_mass() -> None:
    with pytest.warns(DeprecationWarning, match="inv_mass"):
        h = HMC(0.1, inv_mass=torch.tensor([4.0, 0.5]))
    torch.testing.assert_close(h.mass, torch.tensor([0.25, 2.0], dtype=torch.float64))


def test_mala_defaults_follow_precondition() -> None:
    assert MALA().adapt_mass == "diag" and MALA().step_size is None
    assert MALA(0.1, precondition=True).adapt_mass is None
    with pytest.raises(ValueError, match="adapt_mass"):
        MALA(0.1, precondition=True, adapt_mass="diag")
    with pytest.raises(ValueError, match="mass"):
        MALA(0.1, precondition=True, mass=[1.0, 1.0])


@pytest.mark.parametrize("sampler", [MALA(), HMC(n_leapfrog=3)], ids=["mala", "hmc"])
def test_a_start_with_non_finite_energy_is_refused_naming_x0(sampler) -> None:
    class Positive(ebmcore.Energy):
        event_shape = (1,)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -torch.log(x[:, 0])  # NaN below 0, inf at 0

    x0 = torch.tensor([[1.0], [-1.0], [2.0], [0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x0 for 2 of 4 chains \(rows 1, 3\)"):
        sampler.sample(Positive(), x0, 5)


@pytest.mark.parametrize(("sampler", "per_step"), [
    (HMC(0.3, n_leapfrog=7), 7), (MALA(0.3), 1)], ids=["hmc", "mala"])
def test_gradient_counts_are_exact(sampler, per_step: int, gauss2: GaussianTarget) -> None:
    energy = Counting(gauss2)
    d = sampler.sample(energy, torch.zeros(8, 2, dtype=torch.float64), 6,
                       burn_in=4).diagnostics
    assert energy.gradients == 1 + 10 * per_step  # one batched call per gradient
    assert d["n_grad_warmup"].tolist() == [4 * per_step] * 8
    assert d["n_grad_sampling"].tolist() == [6 * per_step] * 8


def test_the_step_size_search_counts_as_warm_up(gauss2: GaussianTarget) -> None:
    energy = Counting(gauss2)
    d = HMC(n_leapfrog=3).sample(energy, torch.zeros(8, 2, dtype=torch.float64), 6,
                                 burn_in=4).diagnostics
    search = energy.gradients - 1 - 10 * 3
    assert search >= 2
    assert d["n_grad_warmup"].tolist() == [4 * 3 + search] * 8
    assert d["n_grad_sampling"].tolist() == [18] * 8


def test_fused_runs_report_counts_and_refuse_what_they_cannot_do() -> None:
    energy = ebmcore.create("energy", "double_well")
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    fixed = HMC(0.1, n_leapfrog=4, adapt_mass=None, adapt_step_size=False)
    d = fixed.sample(energy, x0, 5, burn_in=3, backend="numba", generator=gen).diagnostics
    assert d["backend"] == "numba"
    assert d["n_grad_warmup"].tolist() == [12] * 16
    assert d["n_grad_sampling"].tolist() == [20] * 16
    # Mass adaptation acts in burn-in only, so a run without burn-in may run fused.
    assert HMC(0.1).sample(energy, x0, 3, backend="numba").diagnostics["backend"] == "numba"
    per_chain = MALA(0.1, adapt_mass=None)
    per_chain.step_size_groups = 0  # each chain adapts on its own, as the kernels do
    d = per_chain.sample(energy, x0, 3, burn_in=2, generator=gen).diagnostics
    assert d["backend"] == "numba"
    refused = {"step_size=None": HMC(), "mass adaptation": HMC(0.1, adapt_step_size=False),
               "pools the acceptance": MALA(0.1, adapt_mass=None),
               "mass matrix": MALA(0.1, mass=[1.0, 2.0], adapt_mass=None),
               "jitter": MALA(0.1, jitter=0.1, adapt_mass=None)}
    for match, sampler in refused.items():
        with pytest.raises(BackendUnavailableError, match=match):
            sampler.sample(energy, x0, 3, burn_in=2, backend="numba")
        assert sampler.sample(energy, x0, 3, burn_in=2).diagnostics["backend"] == "torch"
    with pytest.raises(BackendUnavailableError, match="time_limit"):
        fixed.sample(energy, x0, 3, backend="numba", time_limit=10.0)
    d = fixed.sample(energy, x0, 3, time_limit=10.0).diagnostics
    assert d["backend"] == "torch" and "stopped_early" not in d


def test_parallel_tempering_counts_every_replica(gauss2: GaussianTarget) -> None:
    pt = ebmcore.create("sampler", "parallel_tempering", base=HMC(0.3, n_leapfrog=2),
                        temperatures=[1.0, 2.0, 4.0])
    assert pt.base.step_size_groups == 3
    d = pt.sample(gauss2, torch.zeros(5, 2, dtype=torch.float64), 4, burn_in=2).diagnostics
    assert d["n_grad_warmup"].tolist() == [2 * 2 * 3] * 5
    assert d["n_grad_sampling"].tolist() == [4 * 2 * 3] * 5
