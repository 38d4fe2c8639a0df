"""Score-matching losses against closed forms for a Gaussian energy."""

from __future__ import annotations

import pytest
import torch
from conftest import LearnableGaussian, closed_form_grads, loss_grads

import ebmcore


def _sm_objective(x):
    """Exact score matching for E = ½ dᵀPd: mean ½|P d|² - tr P."""
    def objective(mean, p):
        d = x - mean
        return 0.5 * (d @ p).pow(2).sum(1).mean() - torch.trace(p)
    return objective


def _dsm_objective(x, sigma):
    """Expected DSM loss for E = ½ dᵀPd: ½σ²(mean |P d|² + |I/σ - σP|_F²)."""
    def objective(mean, p):
        d = x - mean
        eye = torch.eye(p.shape[0], dtype=p.dtype)
        return 0.5 * sigma**2 * ((d @ p).pow(2).sum(1).mean()
                                 + (eye / sigma - sigma * p).pow(2).sum())
    return objective


def test_exact_score_matching_matches_closed_form(gaussian_setup):
    model, x, _, _ = gaussian_setup
    out, gm, ga = loss_grads(ebmcore.create("loss", "score_matching"), model, x)
    value, want_m, want_a = closed_form_grads(_sm_objective(x), model.mean.detach(),
                                              model.a.detach())
    torch.testing.assert_close(out.loss.detach(), value)
    torch.testing.assert_close(gm, want_m)
    torch.testing.assert_close(ga, want_a)


def test_score_matching_minimiser_is_the_sample_mean_and_covariance(gaussian_setup):
    _, x, true_mean, true_cov = gaussian_setup
    model = LearnableGaussian(torch.zeros(2), torch.eye(2))
    loss = ebmcore.create("loss", "sm")
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=200, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = loss(model, x)
        out.loss.backward()
        return out.loss

    for _ in range(3):
        opt.step(closure)
    fitted_cov = torch.linalg.inv(model.precision.detach())
    sample_mean = x.mean(0)
    sample_cov = torch.cov(x.T, correction=0)
    # The objective is ½ tr(P² S) - tr P: its minimiser is exactly (x̄, S), up to optimisation.
    torch.testing.assert_close(model.mean.detach(), sample_mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(fitted_cov, sample_cov, atol=1e-6, rtol=0)
    # And it estimates the population values within their sampling error.
    n = x.shape[0]
    se_mean = (true_cov.diagonal() / n).sqrt()
    assert ((model.mean.detach() - true_mean).abs() < 5 * se_mean).all()
    var = true_cov.diagonal()
    se_cov = ((true_cov**2 + var[:, None] * var[None, :]) / n).sqrt()  # Wishart variance
    assert ((fitted_cov - true_cov).abs() < 5 * se_cov).all()


@pytest.mark.parametrize("variance_reduced", [True, False])
def test_sliced_score_matching_is_unbiased_for_exact_score_matching(gaussian_setup,
                                                                   variance_reduced):
    model, x, _, _ = gaussian_setup
    x = x[:64]
    loss = ebmcore.create("loss", "ssm", n_projections=4, variance_reduced=variance_reduced,
                          generator=torch.Generator().manual_seed(0))
    draws = []
    for _ in range(200):
        out, gm, ga = loss_grads(loss, model, x)
        draws.append(torch.cat([out.loss.detach()[None], gm, ga.flatten()]))
    draws = torch.stack(draws)
    value, want_m, want_a = closed_form_grads(_sm_objective(x), model.mean.detach(),
                                              model.a.detach())
    want = torch.cat([value[None], want_m, want_a.flatten()])
    mcse = draws.std(0) / draws.shape[0] ** 0.5
    # Components that do not depend on the draws have zero MCSE: allow rounding there.
    assert ((draws.mean(0) - want).abs() < 5 * mcse + 1e-10).all(), (draws.mean(0), want, mcse)


@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_denoising_score_matching_matches_its_expected_objective(gaussian_setup, sigma):
    model, x, _, _ = gaussian_setup
    x = x[:128]
    loss = ebmcore.create("loss", "dsm", sigmas=sigma, generator=torch.Generator().manual_seed(1))
    draws = []
    for _ in range(200):
        out, gm, ga = loss_grads(loss, model, x)
        draws.append(torch.cat([out.loss.detach()[None], gm, ga.flatten()]))
    draws = torch.stack(draws)
    value, want_m, want_a = closed_form_grads(_dsm_objective(x, sigma), model.mean.detach(),
                                              model.a.detach())
    want = torch.cat([value[None], want_m, want_a.flatten()])
    mcse = draws.std(0) / draws.shape[0] ** 0.5
    # Components that do not depend on the draws have zero MCSE: allow rounding there.
    assert ((draws.mean(0) - want).abs() < 5 * mcse + 1e-10).all(), (draws.mean(0), want, mcse)


def test_dsm_with_several_noise_levels_averages_them(gaussian_setup):
    model, x, _, _ = gaussian_setup
    x = x[:128]
    sigmas = [0.2, 0.6]
    loss = ebmcore.create("loss", "dsm", sigmas=sigmas, generator=torch.Generator().manual_seed(2))
    values = torch.stack([loss(model, x).loss.detach() for _ in range(300)])
    want = sum(_dsm_objective(x, s)(model.mean.detach(), model.precision.detach())
               for s in sigmas) / len(sigmas)
    assert abs(float(values.mean() - want)) < 5 * float(values.std() / values.numel() ** 0.5)


def test_score_matching_losses_reject_bad_arguments(gaussian_setup):
    model, _, _, _ = gaussian_setup
    with pytest.raises(ValueError, match="max_dim"):
        ebmcore.create("loss", "score_matching", max_dim=1)(model, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="sigmas"):
        ebmcore.create("loss", "dsm", sigmas=0.0)
    with pytest.raises(ValueError, match=r"sigmas\[1\]"):
        ebmcore.create("loss", "dsm", sigmas=[0.1, -1.0])
    with pytest.raises(TypeError, match="sigmas"):
        ebmcore.create("loss", "dsm", sigmas="big")
    with pytest.raises(ValueError, match="n_projections"):
        ebmcore.create("loss", "ssm", n_projections=0)
    with pytest.raises(TypeError, match="variance_reduced"):
        ebmcore.create("loss", "ssm", variance_reduced="yes")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ebmcore.create("loss", "sm")(model, [[0.0, 0.0]])
    with pytest.raises(TypeError, match="ebmcore.Energy"):
        ebmcore.create("loss", "sm")(lambda x: x.sum(1), torch.zeros(4, 2))
