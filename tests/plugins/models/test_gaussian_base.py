"""The Gaussian base of the neural energies: its fit, energy, normaliser and exact samples."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_models.gaussian_base import GaussianBase

import ebmcore
from ebmcore.evaluate import ais


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _correlated(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draws of a known correlated 3-D Gaussian, with its mean and covariance."""
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    tril = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [-0.3, 0.2, 0.1]],
                        dtype=torch.float64)
    x = mean + torch.randn(n, 3, generator=_gen(seed), dtype=torch.float64) @ tril.T
    return x, mean, tril @ tril.T


def test_fit_is_maximum_likelihood_and_the_energy_is_the_normal_log_density():
    x, _, _ = _correlated(500)
    base = GaussianBase((3,)).double()
    base.fit(x)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / x.shape[0]
    torch.testing.assert_close(base.mean, mean)
    torch.testing.assert_close(base.scale_tril @ base.scale_tril.T, cov)
    normal = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    probe = torch.randn(20, 3, generator=_gen(1), dtype=torch.float64) * 3
    # -E - log Z is the exact log density: the energy and the normaliser agree
    torch.testing.assert_close(-base(probe) - base.log_z, normal.log_prob(probe))
    assert bool(base.fitted)


def test_unfitted_base_is_the_standard_normal():
    base = GaussianBase((1, 2, 2))
    x = torch.randn(5, 1, 2, 2, generator=_gen())
    torch.testing.assert_close(base(x), 0.5 * x.flatten(1).square().sum(1))
    assert base.log_z == pytest.approx(2 * math.log(2 * math.pi))


def test_exact_samples_have_the_fitted_moments():
    x, mean, cov = _correlated(20000)
    base = GaussianBase((3,)).double()
    base.fit(x)
    draws = base.sample(40000, _gen(2))
    assert draws.shape == (40000, 3)
    # each mean's Monte Carlo standard error is sd / sqrt(n); allow 4 of them
    stderr = base.scale_tril.diagonal().abs().max() / math.sqrt(40000)
    assert float((draws.mean(0) - base.mean).abs().max()) < 4 * 4 * float(stderr)
    torch.testing.assert_close(torch.cov(draws.T), base.scale_tril @ base.scale_tril.T,
                               atol=0.03, rtol=0.05)
    torch.testing.assert_close(base.sample(10, _gen(3)), base.sample(10, _gen(3)))


def test_fit_rejects_singular_or_too_few_points():
    base = GaussianBase((2,))
    with pytest.raises(ValueError, match="more than 2 points"):
        base.fit(torch.randn(2, 2, generator=_gen()))
    line = torch.randn(50, 1, generator=_gen()).repeat(1, 2)  # collinear coordinates
    with pytest.raises(ValueError, match="singular"):
        base.fit(line)
    with pytest.raises(ValueError, match="x"):
        base.fit(torch.randn(50, 3, generator=_gen()))


def test_conv_defaults_to_the_gaussian_base_and_gives_ais_its_start():
    """With the network silenced the model is its base, so forward AIS is exact."""
    model = ebmcore.create("model", "conv", in_channels=1, image_size=4, channels=[2])
    images = torch.rand(300, 1, 4, 4, generator=_gen())
    model.fit_confinement(images)
    assert model.normalisable and model.confinement_fitted
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
    start = model.base_energy()
    assert start.has_exact_sampler and start.event_shape == (1, 4, 4)
    torch.testing.assert_close(model(images[:5]), start(images[:5]))
    result = ais(model, start, n_chains=50, n_temps=5, generator=_gen(1))
    assert result.log_z == pytest.approx(start.log_z, abs=1e-4)


def test_models_without_a_gaussian_base_have_no_base_energy():
    assert ebmcore.create("model", "mlp", dim=2).base_energy() is None
    assert ebmcore.create("model", "conv", image_size=4, confine="wall").base_energy() is None
