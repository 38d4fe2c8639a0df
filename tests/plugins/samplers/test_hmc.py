"""Tests of Hamiltonian Monte Carlo."""

from __future__ import annotations

import pytest
import torch
from core_sampler_helpers import Counting, compare_with_exact
from ebmcore_samplers.hmc import HMC
from ebmcore_samplers.schedules import Polynomial

import ebmcore
from ebmcore.testing.sampler_checks import GaussianTarget, check_sampler, correlated_gaussian


def test_registered() -> None:
    assert isinstance(ebmcore.create("sampler", "hmc", step_size=0.1), HMC)


@pytest.mark.parametrize(("kwargs", "name", "error"), [
    ({"step_size": 0.0}, "step_size", ValueError),
    ({"step_size": 0.1, "n_leapfrog": 0}, "n_leapfrog", ValueError),
    ({"step_size": 0.1, "n_leapfrog": 2.5}, "n_leapfrog", TypeError),
    ({"step_size": 0.1, "jitter": 1.0}, "jitter", ValueError),
    ({"step_size": 0.1, "jitter": -0.1}, "jitter", ValueError),
    ({"step_size": 0.1, "mass": [1.0, -1.0]}, "mass", ValueError),
    ({"step_size": 0.1, "mass": [[1.0, 2.0], [0.0, 1.0]]}, "symmetric", ValueError),
    ({"step_size": 0.1, "mass": [[1.0, 2.0], [2.0, 1.0]]}, "positive definite", ValueError),
    ({"step_size": 0.1, "adapt_mass": "full"}, "adapt_mass", ValueError),
    ({"step_size": 0.1, "adapt_mass": 1}, "adapt_mass", TypeError),
    ({"step_size": 0.1, "target_accept": 1.5}, "target_accept", ValueError),
    ({"step_size": Polynomial(0.1, 0.01, 5)}, "adapt_step_size", ValueError),
])
def test_invalid_parameters_are_named(kwargs: dict, name: str, error: type) -> None:
    with pytest.raises(error, match=name):
        HMC(**kwargs)


def test_mass_size_is_checked_against_the_points(gauss2: GaussianTarget) -> None:
    with pytest.raises(ValueError, match="mass has size 3"):
        HMC(0.1, mass=[1.0, 1.0, 1.0]).init(gauss2, torch.zeros(2, 2, dtype=torch.float64))


@pytest.mark.parametrize("n_leapfrog", [1, 7])
def test_exactly_n_leapfrog_gradients_per_trajectory(gauss2: GaussianTarget,
                                                     n_leapfrog: int) -> None:
    energy = Counting(gauss2)
    HMC(0.3, n_leapfrog=n_leapfrog).sample(energy, torch.zeros(8, 2, dtype=torch.float64), 6,
                                           burn_in=4)
    assert energy.gradients == 1 + 10 * n_leapfrog
    assert energy.calls["forward"] == 0


def test_leapfrog_conserves_energy_at_small_steps(gauss2: GaussianTarget,
                                                  gen: torch.Generator) -> None:
    sampler = HMC(0.01, n_leapfrog=20, adapt_step_size=False)
    state = sampler.init(gauss2, gauss2.sample(50, gen))
    _, info = sampler.step(gauss2, state, gen)
    # Leapfrog's energy error is O(eps^2): tiny here, and every proposal accepted.
    assert info["energy_error"].abs().max() < 1e-3
    assert info["accepted"].all() and not info["divergent"].any()


def test_divergences_are_flagged_and_rejected(gen: torch.Generator) -> None:
    stiff = GaussianTarget(torch.zeros(2), torch.eye(2) * 1e-4)
    x0 = torch.full((16, 2), 0.01, dtype=torch.float64)
    r = HMC(1.0, n_leapfrog=10, adapt_step_size=False).sample(stiff, x0, 3, generator=gen)
    assert torch.equal(r.diagnostics["divergences"], torch.full((16,), 3))
    assert torch.equal(r.samples, x0)  # every divergent trajectory rejected
    assert r.diagnostics["nonfinite_chains"].numel() == 0


def test_check_sampler_2d() -> None:
    check_sampler(HMC(0.3, n_leapfrog=5), n_chains=300, burn_in=200, n_steps=200)


def test_check_sampler_jitter_without_adaptation() -> None:
    check_sampler(HMC(0.3, n_leapfrog=5, jitter=0.5, adapt_step_size=False), n_chains=300,
                  burn_in=100, n_steps=200)


def test_check_sampler_diagonal_mass() -> None:
    target = correlated_gaussian(2, scale_ratio=4.0)
    check_sampler(HMC(0.4, n_leapfrog=5, mass=1.0 / target.cov.diagonal()), scale_ratio=4.0,
                  n_chains=300, burn_in=200, n_steps=200)


def test_check_sampler_image_events() -> None:
    # Points of shape (2, 2): the leapfrog works on flattened views.
    check_sampler(HMC(0.3, n_leapfrog=5), dim=4, event_shape=(2, 2), n_chains=300,
                  burn_in=200, n_steps=200)


def test_check_sampler_50d_ill_conditioned_with_diagonal_mass_adaptation() -> None:
    r = check_sampler(HMC(0.05, n_leapfrog=10, adapt_mass="diag"), dim=50, scale_ratio=10.0,
                      n_chains=200, burn_in=300, n_steps=200, thin=2)
    inv_mass = r["result"].diagnostics["inverse_mass"]
    true_var = correlated_gaussian(50, scale_ratio=10.0).cov.diagonal()
    ratio = inv_mass / true_var
    # The inverse mass follows the variances (which span a factor 100) to within a factor 2.
    assert inv_mass.shape == (50,) and float(ratio.min()) > 0.5 and float(ratio.max()) < 2.0


def test_check_sampler_50d_dense_mass() -> None:
    target = correlated_gaussian(50, scale_ratio=10.0)
    check_sampler(HMC(0.5, n_leapfrog=5, mass=target.precision), dim=50, scale_ratio=10.0,
                  n_chains=200, burn_in=100, n_steps=100)


def test_check_sampler_50d_dense_mass_adaptation() -> None:
    r = check_sampler(HMC(0.05, n_leapfrog=10, adapt_mass="dense"), dim=50, scale_ratio=10.0,
                      n_chains=200, burn_in=300, n_steps=200, thin=2)
    assert r["result"].diagnostics["inverse_mass"].shape == (50, 50)


def test_banana_against_exact_samples() -> None:
    banana = ebmcore.create("energy", "banana", dim=2, curvature=0.3, scale=1.5).double()
    gen = torch.Generator().manual_seed(4)
    x0 = banana.sample(300, gen).double()
    traj = HMC(0.3, n_leapfrog=8, jitter=0.2).sample(banana, x0, 300, burn_in=200,
                                                      generator=gen, backend="torch",
                                                      return_trajectory=True).trajectory
    exact = banana.sample(200_000, gen).double()
    compare_with_exact(traj, exact, {
        "x0": lambda x: x[..., 0], "x1": lambda x: x[..., 1], "x0^2": lambda x: x[..., 0] ** 2,
        "x1^2": lambda x: x[..., 1] ** 2, "x0^2*x1": lambda x: x[..., 0] ** 2 * x[..., 1]})


def test_mild_funnel_against_exact_samples() -> None:
    # sigma = 1 keeps the neck reachable; the v marginal and E[x_i^2] = E[e^v] are compared.
    funnel = ebmcore.create("energy", "funnel", dim=3, scale=1.0).double()
    gen = torch.Generator().manual_seed(5)
    x0 = funnel.sample(300, gen).double()
    traj = HMC(0.2, n_leapfrog=10, jitter=0.3, target_accept=0.9).sample(
        funnel, x0, 300, burn_in=300, generator=gen, return_trajectory=True,
        backend="torch").trajectory
    exact = funnel.sample(200_000, gen).double()
    compare_with_exact(traj, exact, {
        "v": lambda x: x[..., 0], "v^2": lambda x: x[..., 0] ** 2,
        "1[v<-1]": lambda x: (x[..., 0] < -1).double(), "x1^2": lambda x: x[..., 1] ** 2,
        "x1": lambda x: x[..., 1]})


def test_state_dict_round_trip() -> None:
    s = HMC(0.2, n_leapfrog=3, mass=[1.0, 2.0], jitter=0.1, adapt_mass="dense")
    t = HMC(1.0)
    t.load_state_dict(s.state_dict())
    a, b = s.state_dict(), t.state_dict()
    assert torch.equal(a.pop("mass"), b.pop("mass")) and a == b
