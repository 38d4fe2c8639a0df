"""Exact samplers agree with their log normalisers and moments (beyond what the kit's 2-D
quadrature covers); tolerances are Monte Carlo standard errors of iid samples."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

import ebmcore

N = 40_000
K_SE = 5.0


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_mean(samples: torch.Tensor, expected: torch.Tensor, sd: torch.Tensor,
                 label: str) -> None:
    mcse = sd / math.sqrt(samples.shape[0])
    dev = (samples.mean(0) - expected).abs()
    assert bool((dev <= K_SE * mcse).all()), f"{label}: deviation {dev} > {K_SE} x MCSE {mcse}"


def test_funnel_10d_marginals() -> None:
    energy = ebmcore.create("energy", "funnel", dim=10, scale=3.0).double()
    x = energy.sample(N, generator=_gen(1))
    v, rest = x[:, 0], x[:, 1:]
    # v ~ N(0, 9): mean 0 (sd 3) and v^2 has mean 9, sd 9 sqrt(2).
    _assert_mean(v[:, None], torch.zeros(1), torch.tensor([3.0]), "E[v]")
    _assert_mean((v * v)[:, None], torch.tensor([9.0]), torch.tensor([9 * math.sqrt(2)]), "E[v^2]")
    # x_i e^{-v/2} ~ N(0, 1), independent of v.
    u = rest * torch.exp(-0.5 * v)[:, None]
    _assert_mean(u, torch.zeros(9), torch.ones(9), "E[x_i e^{-v/2}]")
    _assert_mean(u * u, torch.ones(9), torch.full((9,), math.sqrt(2)), "E[x_i^2 e^{-v}]")


def test_banana_4d_moments() -> None:
    b, s = 0.4, 1.5
    energy = ebmcore.create("energy", "banana", dim=4, curvature=b, scale=s).double()
    x = energy.sample(N, generator=_gen(2))
    sd = torch.tensor([s, math.sqrt(1 + 2 * b * b * s**4), 1.0, 1.0])
    _assert_mean(x, torch.zeros(4), sd, "banana mean")
    # x1 - b (x0^2 - s^2) is standard normal and uncorrelated with x0.
    r = x[:, 1] - b * (x[:, 0] ** 2 - s * s)
    _assert_mean(torch.stack([r, r * r, r * x[:, 0]], 1), torch.tensor([0.0, 1.0, 0.0]),
                 torch.tensor([1.0, math.sqrt(2), s]), "banana residual")
    # log_z: the energy is -log N(x0; 0, s^2) - log N(r; 0, 1) - ... exactly.
    expected = -torch.distributions.Normal(0.0, s).log_prob(x[:, 0]) \
        - torch.distributions.Normal(0.0, 1.0).log_prob(r) \
        - torch.distributions.Normal(0.0, 1.0).log_prob(x[:, 2:]).sum(1)
    torch.testing.assert_close(energy(x) + energy.log_z, expected)


@pytest.mark.parametrize("dim", [1, 2, 3, 6])
def test_ring_log_z_and_radius_against_scipy(dim: int) -> None:
    radius, width = 1.5, 0.625  # exact in float32, the default parameter dtype
    energy = ebmcore.create("energy", "ring", dim=dim, radius=radius, width=width).double()
    area = 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)

    def radial(rho: float, power: int) -> float:
        return rho ** (dim - 1 + power) * math.exp(-((rho - radius) ** 2) / (2 * width**2))

    z_r = integrate.quad(radial, 0, math.inf, args=(0,), epsabs=0, epsrel=1e-12)[0]
    assert energy.log_z == pytest.approx(math.log(area * z_r), rel=0, abs=1e-9)
    m1 = integrate.quad(radial, 0, math.inf, args=(1,), epsrel=1e-12)[0] / z_r
    m2 = integrate.quad(radial, 0, math.inf, args=(2,), epsrel=1e-12)[0] / z_r
    x = energy.sample(N, generator=_gen(3 + dim))
    rho = x.norm(dim=1)
    _assert_mean(rho[:, None], torch.tensor([m1]), torch.tensor([math.sqrt(m2 - m1 * m1)]),
                 f"ring radius D={dim}")
    # Directions are uniform: every coordinate has mean 0 and E[x_i^2] = E[rho^2] / D.
    _assert_mean(x, torch.zeros(dim), torch.full((dim,), math.sqrt(m2 / dim)), "ring mean")


def test_ring_log_z_is_stable_in_high_dimension() -> None:
    energy = ebmcore.create("energy", "ring", dim=400, radius=30.0, width=0.5)
    assert math.isfinite(energy.log_z)
    x = energy.sample(200, generator=_gen(5))
    assert torch.isfinite(x).all()


def test_gaussian_parameterisations_agree() -> None:
    cov = torch.tensor([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 0.5]], dtype=torch.float64)
    mean = [1.0, -2.0, 0.5]
    by_cov = ebmcore.create("energy", "gaussian", mean=mean, cov=cov).double()
    by_prec = ebmcore.create("energy", "gaussian", mean=mean,
                             precision=torch.linalg.inv(cov)).double()
    ref = torch.distributions.MultivariateNormal(torch.tensor(mean, dtype=torch.float64), cov)
    x = torch.randn(16, 3, generator=_gen(6), dtype=torch.float64)
    for energy in (by_cov, by_prec):
        torch.testing.assert_close(-energy(x) - energy.log_z, ref.log_prob(x), rtol=1e-5,
                                   atol=1e-5)
    diag = ebmcore.create("energy", "gaussian", mean=mean, diag=[2.0, 1.0, 0.5]).double()
    ref_d = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64),
                                       torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64).sqrt())
    torch.testing.assert_close(-diag(x) - diag.log_z, ref_d.log_prob(x).sum(1))


def test_gaussian_5d_sample_covariance() -> None:
    a = torch.randn(5, 5, generator=_gen(7), dtype=torch.float64)
    cov = a @ a.T + 0.5 * torch.eye(5, dtype=torch.float64)
    energy = ebmcore.create("energy", "gaussian", mean=torch.arange(5.0), cov=cov).double()
    x = energy.sample(N, generator=_gen(8))
    sd = cov.diagonal().sqrt()
    _assert_mean(x, torch.arange(5.0, dtype=torch.float64), sd, "gaussian mean")
    c = x - torch.arange(5.0, dtype=torch.float64)
    prods = torch.stack([c[:, i] * c[:, j] for i in range(5) for j in range(5)], 1)
    # Var(c_i c_j) = S_ii S_jj + S_ij^2 for a centred Gaussian.
    sd_p = torch.stack([(cov[i, i] * cov[j, j] + cov[i, j] ** 2).sqrt()
                        for i in range(5) for j in range(5)])
    _assert_mean(prods, cov.reshape(-1), sd_p, "gaussian covariance")


def test_mixture_3d_mean_and_component_frequencies() -> None:
    means = torch.tensor([[0.0, 1.0, 2.0], [3.0, -1.0, 0.0], [-2.0, 2.0, 1.0]])
    weights = torch.tensor([0.2, 0.5, 0.3])
    energy = ebmcore.create("energy", "gaussian_mixture", means=means, covs=[0.5, 1.0, 0.2],
                            weights=weights).double()
    x = energy.sample(N, generator=_gen(9))
    var = (torch.tensor([0.5, 1.0, 0.2])[:, None] + means**2) * weights[:, None]
    mu = (weights[:, None] * means).sum(0)
    sd = (var.sum(0) - mu**2).sqrt()
    _assert_mean(x.float(), mu, sd, "mixture mean")
    # The energy is the normalised negative log density (log_z = 0).
    comps = torch.distributions.MultivariateNormal(
        means.double(), torch.diag_embed(torch.tensor([0.5, 1.0, 0.2])[:, None].expand(3, 3))
        .double())
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(weights.double()), comps)
    torch.testing.assert_close(-energy(x[:100]), mix.log_prob(x[:100]))


def test_rosenbrock_exact_only_in_2d() -> None:
    assert ebmcore.create("energy", "rosenbrock").has_exact_sampler
    high = ebmcore.create("energy", "rosenbrock", dim=3)
    assert not high.has_exact_sampler and high.log_z is None
    with pytest.raises(NotImplementedError, match="dim=2"):
        high.sample(3)


@pytest.mark.parametrize("name", ["gaussian", "gaussian_mixture", "harmonic", "banana",
                                  "funnel", "ring", "rosenbrock"])
def test_samplers_keep_the_global_rng_and_repeat_under_a_seed(name: str) -> None:
    params = {"gaussian": dict(mean=[0.0, 1.0]), "gaussian_mixture": dict(means=[[0.0], [2.0]]),
              "funnel": dict(dim=3)}.get(name, {})
    energy = ebmcore.create("energy", name, **params)
    state = torch.get_rng_state()
    a = energy.sample(50, generator=_gen(11))
    b = energy.sample(50, generator=_gen(11))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert energy.sample(0).shape == (0, *energy.event_shape)
