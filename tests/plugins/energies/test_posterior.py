"""Posterior energies over named, constrained parameter blocks (ebmcore_energies.posterior)."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_energies.posterior import Posterior
from torch.distributions import (
    Beta,
    Dirichlet,
    Gamma,
    HalfCauchy,
    LKJCholesky,
    LogNormal,
    Normal,
    constraints,
)

import ebmcore
from ebmcore.testing.energy_checks import check_energy

Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)
SCHOOLS = {"mu": constraints.real, "tau": constraints.positive, "eta": (8, constraints.real)}


def schools_one(mu, tau, eta):
    """Eight schools, non-centred, for one draw."""
    return (Normal(0.0, 5.0).log_prob(mu) + HalfCauchy(5.0).log_prob(tau)
            + Normal(0.0, 1.0).log_prob(eta).sum()
            + Normal(mu + tau * eta, SIGMA).log_prob(Y).sum())


def schools_batch(mu, tau, eta):
    """The same for a batch of draws."""
    return (Normal(0.0, 5.0).log_prob(mu) + HalfCauchy(5.0).log_prob(tau)
            + Normal(0.0, 1.0).log_prob(eta).sum(-1)
            + Normal(mu[:, None] + tau[:, None] * eta, SIGMA).log_prob(Y).sum(-1))


def schools_by_hand(z: torch.Tensor) -> torch.Tensor:
    """Eight schools written directly over (mu, log tau, eta), Jacobian log tau included."""
    mu, log_tau, eta = z[:, 0], z[:, 1], z[:, 2:]
    tau = log_tau.exp()
    lp = (-0.5 * (mu / 5.0) ** 2 - math.log(5.0) - 0.5 * math.log(2 * math.pi)
          + math.log(2 / (math.pi * 5.0)) - torch.log1p((tau / 5.0) ** 2)
          + (-0.5 * eta ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
          + (-0.5 * ((mu[:, None] + tau[:, None] * eta - Y) / SIGMA) ** 2
             - SIGMA.log() - 0.5 * math.log(2 * math.pi)).sum(-1))
    return -(lp + log_tau)


def f64(*values: float) -> torch.Tensor:
    """Distribution parameters in float64 (Gamma and Beta cast their argument to them)."""
    return torch.tensor(values if len(values) > 1 else values[0], dtype=torch.float64)


def _points(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


# -- the energy ----------------------------------------------------------------------------


def test_energy_matches_hand_written_change_of_variables() -> None:
    z = _points(6, 10)
    for posterior in (Posterior(schools_one, SCHOOLS),
                      Posterior(schools_batch, SCHOOLS, batched=True)):
        assert posterior.event_shape == (10,) and posterior.dim == 10
        torch.testing.assert_close(posterior(z), schools_by_hand(z))
        e, g = posterior.energy_and_grad(z)
        z_ = z.clone().requires_grad_(True)
        (g_ref,) = torch.autograd.grad(schools_by_hand(z_).sum(), z_)
        torch.testing.assert_close(e, schools_by_hand(z))
        torch.testing.assert_close(g, g_ref)


def test_gradient_matches_finite_differences() -> None:
    params = {"a": ((2,), constraints.interval(-1.0, 3.0)), "w": ((3,), constraints.simplex),
              "s": constraints.greater_than(0.5)}

    def log_prob(a, w, s):
        return (Dirichlet(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)).log_prob(w)
                + (a * w[:2]).sum() + Gamma(f64(2.0), f64(1.0)).log_prob(s - 0.5) + a.sin().sum())

    posterior = Posterior(log_prob, params)
    z = _points(3, posterior.dim, seed=1)
    _, g = posterior.energy_and_grad(z)
    h = 1e-6
    for j in range(posterior.dim):
        step = torch.zeros_like(z)
        step[:, j] = h
        fd = (posterior(z + step) - posterior(z - step)) / (2 * h)
        torch.testing.assert_close(g[:, j], fd, rtol=1e-6, atol=1e-6)


def test_conformance_kit_passes() -> None:
    check_energy(Posterior(schools_batch, SCHOOLS, batched=True), (10,))


@pytest.mark.parametrize("support, density", [
    (constraints.positive, Gamma(f64(3.0), f64(2.0))),
    (constraints.greater_than(-2.0), None),
    (constraints.unit_interval, Beta(f64(2.0), f64(5.0))),
    (constraints.interval(-1.0, 3.0), None),
    (constraints.real, Normal(f64(1.0), f64(2.0))),
], ids=["positive", "greater_than", "unit_interval", "interval", "real"])
def test_jacobian_makes_a_normalised_density_integrate_to_one(support, density) -> None:
    """exp(-E) over the unconstrained line integrates to 1 exactly when the log-Jacobian is
    right (quadrature on a fine grid)."""
    if density is None:  # a density on the support, shifted and scaled from a known one
        if isinstance(support, constraints.greater_than):
            base = LogNormal(f64(0.3), f64(0.8))
            lo = support.lower_bound

            def log_prob(x):
                return base.log_prob(x - lo)
        else:
            lo, hi = support.lower_bound, support.upper_bound
            base = Beta(f64(2.5), f64(1.5))

            def log_prob(x):
                return base.log_prob((x - lo) / (hi - lo)) - math.log(hi - lo)
    else:
        def log_prob(x):
            return density.log_prob(x)

    posterior = Posterior(log_prob, {"x": support}, batched=True)  # elementwise anyway
    z = torch.linspace(-40.0, 40.0, 400_001, dtype=torch.float64)[:, None]
    density_z = torch.exp(-posterior(z)).nan_to_num(0.0)
    assert float(torch.trapezoid(density_z, z[:, 0])) == pytest.approx(1.0, abs=1e-6)


def test_simplex_jacobian_integrates_dirichlet_to_one() -> None:
    alpha = torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64)
    posterior = Posterior(lambda w: Dirichlet(alpha).log_prob(w), {"w": (3, constraints.simplex)})
    assert posterior.dim == 2
    grid = torch.linspace(-12.0, 12.0, 1201, dtype=torch.float64)
    z = torch.cartesian_prod(grid, grid)
    density_z = torch.exp(-posterior(z)).reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density_z, grid, dim=1), grid)
    assert float(total) == pytest.approx(1.0, abs=1e-4)


def test_a_non_finite_chain_gets_a_nan_energy_and_leaves_the_others() -> None:
    def log_prob(s):  # a validating distribution would raise on NaN for the whole batch
        return LogNormal(f64(0.0), f64(1.0), validate_args=True).log_prob(s)

    posterior = Posterior(log_prob, {"s": constraints.positive}, batched=True)
    z = torch.tensor([[0.5], [math.nan], [-1.0], [math.inf]], dtype=torch.float64)
    e, g = posterior.energy_and_grad(z)
    ok = torch.tensor([True, False, True, False])
    torch.testing.assert_close(e[ok], posterior(z[ok]))
    torch.testing.assert_close(g[ok], posterior.grad(z[ok]))
    assert bool(e[~ok].isnan().all()) and bool(g[~ok].isnan().all())


def test_distributions_built_inside_log_prob_do_not_validate_by_default() -> None:
    def log_prob(s):  # exp(-800) underflows to 0, outside LogNormal's support
        return LogNormal(f64(0.0), f64(1.0)).log_prob(s)

    z = torch.tensor([[0.5], [-800.0]], dtype=torch.float64)
    e = Posterior(log_prob, {"s": constraints.positive})(z)
    torch.testing.assert_close(e[0], -(LogNormal(f64(0.0), f64(1.0)).log_prob(f64(0.5).exp())
                                       + 0.5))
    assert not bool(torch.isfinite(e[1]))
    with pytest.raises((ValueError, RuntimeError)):  # vmap refuses the error's .item()
        Posterior(log_prob, {"s": constraints.positive}, validate_args=True)(z)


def test_vmap_and_batched_log_densities_agree() -> None:
    z = _points(5, 10, seed=3)
    one = Posterior(schools_one, SCHOOLS)
    batch = Posterior(schools_batch, SCHOOLS, batched=True)
    torch.testing.assert_close(one(z), batch(z))


# -- constrain, unconstrain, initial points ---------------------------------------------------


def test_constrain_names_blocks_for_points_chains_and_trajectories() -> None:
    params = {"mu": constraints.real, "L": ((3, 3), constraints.corr_cholesky),
              "w": ((4,), constraints.simplex), "p": ((2, 2), constraints.unit_interval)}
    posterior = Posterior(lambda mu, L, w, p: LKJCholesky(3, f64(2.0)).log_prob(L) + mu, params)
    assert posterior.dim == 1 + 3 + 3 + 4
    assert posterior.names == ["mu", "L", "w", "p"]
    for lead in [(), (5,), (7, 5)]:
        z = torch.randn(*lead, posterior.dim, dtype=torch.float64)
        values = posterior.constrain(z)
        assert {k: tuple(v.shape) for k, v in values.items()} == {
            "mu": lead, "L": (*lead, 3, 3), "w": (*lead, 4), "p": (*lead, 2, 2)}
        for name, (_, support) in [("L", params["L"]), ("w", params["w"]),
                                   ("p", params["p"])]:
            assert bool(support.check(values[name]).all()), name
        torch.testing.assert_close(posterior.unconstrain(values), z)


def test_unconstrain_broadcasts_and_checks_its_input() -> None:
    posterior = Posterior(schools_one, SCHOOLS)
    z = posterior.unconstrain({"mu": torch.tensor([0.0, 1.0], dtype=torch.float64),
                               "tau": 2.0, "eta": torch.zeros(8, dtype=torch.float64)})
    assert z.shape == (2, 10)
    torch.testing.assert_close(z[:, 1], torch.full((2,), math.log(2.0), dtype=torch.float64))
    with pytest.raises(ValueError, match="missing \\['eta'\\]"):
        posterior.unconstrain({"mu": 0.0, "tau": 1.0})
    with pytest.raises(ValueError, match="values\\['tau'\\] lies outside its support"):
        posterior.unconstrain({"mu": 0.0, "tau": -1.0, "eta": torch.zeros(8)})
    with pytest.raises(ValueError, match="values\\['eta'\\] must have shape \\(8,\\)"):
        posterior.unconstrain({"mu": 0.0, "tau": 1.0, "eta": torch.zeros(7)})


def test_initial_points_are_uniform_reproducible_and_leave_the_global_rng() -> None:
    posterior = Posterior(schools_one, SCHOOLS)
    state = torch.random.get_rng_state()
    a = posterior.initial_points(64, torch.Generator().manual_seed(5), dtype=torch.float64)
    b = posterior.initial_points(64, torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == (64, 10) and a.dtype == torch.float64
    assert float(a.abs().max()) < 2.0 and float(a.abs().max()) > 1.5
    c = posterior.initial_points(3, torch.Generator().manual_seed(0), radius=0.1)
    assert float(c.abs().max()) < 0.1
    d = posterior.initial_points(3, init={"mu": 1.0, "tau": 3.0, "eta": torch.zeros(8)},
                                 dtype=torch.float64)
    torch.testing.assert_close(posterior.constrain(d)["tau"],
                               torch.full((3,), 3.0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"init gives starting values for \(2,\) chains"):
        posterior.initial_points(3, init={"mu": torch.zeros(2), "tau": 1.0,
                                          "eta": torch.zeros(8)})
    with pytest.raises(ValueError, match="radius"):
        posterior.initial_points(3, radius=0.0)


def test_sampling_recovers_known_constrained_moments() -> None:
    """A product of known densities on constrained supports, sampled by MALA in the
    unconstrained space: the constrained means agree with the exact ones within 5 MCSE."""
    alpha = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    params = {"s": constraints.positive, "p": constraints.unit_interval,
              "w": (3, constraints.simplex)}

    def log_prob(s, p, w):
        return (Gamma(f64(3.0), f64(2.0)).log_prob(s) + Beta(f64(2.0), f64(5.0)).log_prob(p)
                + Dirichlet(alpha).log_prob(w))

    posterior = Posterior(log_prob, params)
    gen = torch.Generator().manual_seed(0)
    x0 = posterior.initial_points(32, gen, dtype=torch.float64)
    sampler = ebmcore.create("sampler", "mala")
    result = sampler.sample(posterior, x0, 250, burn_in=250, generator=gen,
                            return_trajectory=True)
    draws = posterior.constrain(result.trajectory)
    exact = {"s": torch.tensor(1.5), "p": torch.tensor(2.0 / 7.0), "w": alpha / alpha.sum()}
    for name, value in draws.items():
        chains_first = ebmcore.diagnostics.from_trajectory(value)
        mean = chains_first.mean(dim=(0, 1))
        mcse = ebmcore.diagnostics.mcse_mean(chains_first)
        z = (mean - exact[name].to(mean.dtype)).abs() / mcse
        assert bool((z < 5).all()), f"{name}: mean {mean}, exact {exact[name]}, |z| {z}"


def test_registered_by_name() -> None:
    posterior = ebmcore.create("energy", "posterior", log_prob=schools_one, params=SCHOOLS)
    assert isinstance(posterior, Posterior)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("params, error, match", [
    ({"w": constraints.simplex}, ValueError, r"params\['w'\].*1 event dimension"),
    ({"w": ((1,), constraints.simplex)}, ValueError, r"params\['w'\].*0 free entries"),
    ({"L": ((3, 4), constraints.corr_cholesky)}, ValueError,
     r"params\['L'\]: the shape \(3, 4\) does not fit"),
    ({"L": ((3,), constraints.corr_cholesky)}, ValueError, r"params\['L'\]"),
    ({"k": constraints.integer_interval(0, 3)}, TypeError,
     r"params\['k'\]: PyTorch has no bijection"),
    ({"S": ((2, 2), constraints.positive_definite)}, TypeError, r"params\['S'\]"),
    ({"t": "positive"}, TypeError, r"params\['t'\].*constraints object"),
    ({"t": ((-1,), constraints.real)}, ValueError, r"params\['t'\].*positive ints"),
    ({"not a name": constraints.real}, ValueError, "identifiers"),
    ({}, TypeError, "non-empty"),
], ids=["simplex-scalar", "simplex-one", "cholesky-not-square", "cholesky-vector",
        "discrete", "positive-definite", "string", "negative-shape", "name", "empty"])
def test_bad_supports_and_shapes_name_the_parameter(params, error, match) -> None:
    with pytest.raises(error, match=match):
        Posterior(lambda **kw: torch.tensor(0.0), params)


def test_log_density_of_the_wrong_shape_is_refused() -> None:
    z = _points(4, 10)
    per_draw = Posterior(lambda mu, tau, eta: Normal(0.0, 1.0).log_prob(eta), SCHOOLS)
    with pytest.raises(ValueError, match=r"one number .* for one draw, got shape \(8,\)"):
        per_draw(z)
    batched = Posterior(lambda mu, tau, eta: eta.sum(), SCHOOLS, batched=True)
    with pytest.raises(ValueError, match=r"shape \(4,\) for 4 draws, got \(\)"):
        batched(z)


def test_log_density_that_vmap_cannot_run_says_what_to_do() -> None:
    def branchy(mu, tau, eta):
        return -mu ** 2 if mu > 0 else -2 * mu ** 2

    posterior = Posterior(branchy, {"mu": constraints.real, "tau": constraints.positive,
                                    "eta": (8, constraints.real)})
    with pytest.raises(RuntimeError, match="batched=True"):
        posterior(_points(2, 10))


def test_nan_log_density_at_the_initial_point_names_the_chains() -> None:
    def log_prob(mu, tau):
        return torch.where(mu > 0, torch.nan, -mu ** 2) + Gamma(f64(2.0), f64(1.0)).log_prob(tau)

    posterior = Posterior(log_prob, {"mu": constraints.real, "tau": constraints.positive})
    init = {"mu": torch.tensor([-1.0, 0.5, -0.3, 2.0], dtype=torch.float64), "tau": 1.0}
    with pytest.raises(ValueError, match=r"2 of 4 chains \(chains \[1, 3\]\); chain 1 "
                                         r"gives NaN at mu=0.5, tau=1"):
        posterior.initial_points(4, init=init, dtype=torch.float64)


def test_a_log_density_less_precise_than_the_points_is_refused() -> None:
    posterior = Posterior(lambda x: Gamma(2.0, 1.0).log_prob(x), {"x": constraints.positive})
    with pytest.raises(ValueError, match="torch.float32 for torch.float64 points"):
        posterior(_points(2, 1))
    assert posterior(_points(2, 1).float()).dtype == torch.float32
