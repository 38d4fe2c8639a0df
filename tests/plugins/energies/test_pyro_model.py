"""Energies from Pyro models (ebmcore_energies.pyro_model, optional extra ebmcore[pyro])."""

from __future__ import annotations

import sys

import pytest
import torch
from ebmcore_energies.posterior import Posterior
from torch.distributions import HalfCauchy, Normal, constraints

import ebmcore
from ebmcore.testing.energy_checks import check_energy

pyro = pytest.importorskip("pyro")
dist = pytest.importorskip("pyro.distributions")
from ebmcore_energies.pyro_model import PyroPosterior  # noqa: E402
from pyro.infer.mcmc.util import initialize_model  # noqa: E402

Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], dtype=torch.float64)
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], dtype=torch.float64)


def schools(sigma, y=None):
    """Eight schools, non-centred, in Pyro."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def schools_torch(mu, tau, eta):
    """The same model for a batch of draws, for ebmcore's Posterior."""
    return (Normal(0.0, 5.0).log_prob(mu) + HalfCauchy(5.0).log_prob(tau)
            + Normal(0.0, 1.0).log_prob(eta).sum(-1)
            + Normal(mu[:, None] + tau[:, None] * eta, SIGMA).log_prob(Y).sum(-1))


def mixed(x, counts):
    """Sites with event dimensions, nested plates and a simplex."""
    w = pyro.sample("w", dist.Dirichlet(torch.ones(3, dtype=torch.float64)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
    pyro.sample("counts", dist.Multinomial(10, w), obs=counts)
    with pyro.plate("groups", 2, dim=-2):
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        with pyro.plate("items", 3, dim=-1):
            pyro.sample("obs", dist.Normal(loc, scale), obs=x)


X = torch.tensor([[0.1, -0.4, 0.3], [1.0, 0.2, -0.5]], dtype=torch.float64)
COUNTS = torch.tensor([2.0, 5.0, 3.0], dtype=torch.float64)


def _pyro_potential(model, *args):
    with torch.random.fork_rng(devices=[]):
        _, potential_fn, _, _ = initialize_model(model, model_args=args)
    return potential_fn


@pytest.mark.parametrize("model, args, dim", [(schools, (SIGMA, Y), 10), (mixed, (X, COUNTS), 5)],
                         ids=["schools", "mixed"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_energy_is_pyros_potential_at_random_points(model, args, dim, vectorize) -> None:
    energy = PyroPosterior(model, args, vectorize=vectorize)
    assert energy.dim == dim
    potential_fn = _pyro_potential(model, *args)
    z = torch.randn(6, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    e, g = energy.energy_and_grad(z)
    for i in range(z.shape[0]):
        params = {k: v.detach().requires_grad_(True)
                  for k, v in energy.layout.split(z[i]).items()}
        pe = potential_fn(params)
        grads = torch.autograd.grad(pe, list(params.values()))
        torch.testing.assert_close(e[i], pe.detach().to(e.dtype))
        torch.testing.assert_close(g[i], torch.cat([gr.reshape(-1) for gr in grads]))


def test_conformance_kit_passes() -> None:
    check_energy(PyroPosterior(schools, (SIGMA, Y)), (10,))


def test_constrain_uses_site_names_and_supports() -> None:
    energy = PyroPosterior(mixed, (X, COUNTS))
    assert energy.names == ["w", "scale", "loc"]
    traj = torch.randn(4, 3, energy.dim, dtype=torch.float64)
    draws = energy.constrain(traj)
    assert {k: tuple(v.shape) for k, v in draws.items()} == {
        "w": (4, 3, 3), "scale": (4, 3), "loc": (4, 3, 2, 1)}
    assert bool(constraints.simplex.check(draws["w"]).all())
    assert bool((draws["scale"] > 0).all())
    torch.testing.assert_close(energy.unconstrain(draws), traj)


def test_construction_leaves_the_global_rng_and_registers_by_name() -> None:
    state = torch.random.get_rng_state()
    energy = ebmcore.create("energy", "pyro_model", model=schools, model_args=(SIGMA, Y))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(energy, PyroPosterior)


@pytest.mark.slow  # two HMC runs, about 10 s on one idle core
def test_eight_schools_in_pyro_and_in_torch_sample_the_same_posterior() -> None:
    """The Pyro model and the same model through Posterior, sampled by ebmcore's HMC from
    different seeds: the posterior means agree within 5 combined MCSE."""
    targets = [PyroPosterior(schools, (SIGMA, Y)),
               Posterior(schools_torch, {"mu": constraints.real, "tau": constraints.positive,
                                         "eta": (8, constraints.real)}, batched=True)]
    means, mcses = [], []
    for seed, target in enumerate(targets):
        gen = torch.Generator().manual_seed(seed)
        x0 = target.initial_points(8, gen, dtype=torch.float64)
        sampler = ebmcore.create("sampler", "hmc", n_leapfrog=8, jitter=0.5)
        result = sampler.sample(target, x0, 150, burn_in=100, generator=gen,
                                return_trajectory=True)
        draws = target.constrain(result.trajectory)
        stacked = torch.cat([draws["mu"][..., None], draws["tau"][..., None], draws["eta"]],
                            dim=-1)
        chains_first = ebmcore.diagnostics.from_trajectory(stacked)
        assert float(ebmcore.diagnostics.rhat(chains_first).max()) < 1.1
        means.append(chains_first.mean(dim=(0, 1)))
        mcses.append(ebmcore.diagnostics.mcse_mean(chains_first))
    z = (means[0] - means[1]).abs() / (mcses[0] ** 2 + mcses[1] ** 2).sqrt()
    assert bool((z < 5).all()), f"means {means}, |z| {z}"


def test_discrete_latent_sites_are_refused() -> None:
    def model():
        pyro.sample("k", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"discrete latent sites \['k'\]"):
        PyroPosterior(model)


def test_a_model_that_does_not_vectorise_says_so() -> None:
    def item_model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu.item(), 1.0), obs=y)

    with pytest.raises(ValueError, match="vectorize=False"):
        PyroPosterior(item_model, (torch.tensor(0.5),))
    energy = PyroPosterior(item_model, (torch.tensor(0.5),), vectorize=False)
    assert energy(torch.zeros(3, 1)).shape == (3,)

    def shape_model(y):  # reads a shape from a latent value: wrong under the chain plate
        mu = pyro.sample("mu", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("obs", dist.Normal(mu.reshape(-1)[:2], 1.0).to_event(1), obs=y)

    with pytest.raises(ValueError, match="does not vectorise"):
        PyroPosterior(shape_model, (torch.zeros(2),))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="model must be a callable"):
        PyroPosterior("schools")
    with pytest.raises(TypeError, match="vectorize must be True or False"):
        PyroPosterior(schools, (SIGMA, Y), vectorize="yes")

    def observed_only():
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(ValueError, match="no latent sites"):
        PyroPosterior(observed_only)


def test_missing_pyro_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyro", None)  # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"pip install ebmcore\[pyro\]"):
        PyroPosterior(schools, (SIGMA, Y))
