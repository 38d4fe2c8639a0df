"""Noise-contrastive estimation: closed-form gradient and consistency at the truth."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import LearnableGaussian

import ebmcore


class GaussianNoise:
    """A data-set stand-in: N(mean, s² I) with sample and log_prob."""

    def __init__(self, mean, scale):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.scale = scale

    def sample(self, n, generator=None):
        z = torch.randn(n, self.mean.numel(), generator=generator, dtype=torch.float64)
        return self.mean + self.scale * z

    def log_prob(self, x):
        d = self.mean.numel()
        z = (x - self.mean) / self.scale
        return -0.5 * z.pow(2).sum(1) - d * math.log(self.scale) - 0.5 * d * math.log(2 * math.pi)


def _grads(loss, model, x):
    model.zero_grad(set_to_none=True)
    loss.zero_grad(set_to_none=True)
    out = loss(model, x)
    out.loss.backward()
    return out, torch.cat([model.mean.grad, model.a.grad.flatten(), loss.log_z.grad[None]])


def test_nce_gradient_matches_closed_form(gaussian_setup):
    model, x, _, _ = gaussian_setup
    noise = GaussianNoise([0.0, 0.0], 2.0)
    nu = 2.0
    loss = ebmcore.create("loss", "nce", noise=noise, noise_ratio=nu, init_log_z=0.7,
                          generator=torch.Generator().manual_seed(0))
    out, got = _grads(loss, model, x)
    y = out.negatives
    assert y.shape == (2 * x.shape[0], 2)
    p, mean, a, c = model.precision.detach(), model.mean.detach(), model.a.detach(), 0.7

    def parts(pts):
        d = pts - mean
        e = 0.5 * ((d @ p) * d).sum(1)
        g = -e - c - noise.log_prob(pts) - math.log(nu)
        # dG/dθ = -dE/dθ; dG/dc = -1
        dg = torch.cat([d @ p, -torch.einsum("ni,nj,jk->nik", d, d, a).flatten(1),
                        -torch.ones(len(pts), 1, dtype=pts.dtype)], dim=1)
        return g, dg

    g_x, dg_x = parts(x)
    g_y, dg_y = parts(y)
    want_loss = (-torch.nn.functional.logsigmoid(g_x).mean()
                 - nu * torch.nn.functional.logsigmoid(-g_y).mean())
    want = (-((1 - torch.sigmoid(g_x))[:, None] * dg_x).mean(0)
            + nu * (torch.sigmoid(g_y)[:, None] * dg_y).mean(0))
    torch.testing.assert_close(out.loss.detach(), want_loss)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("noise_kind", ["dataset", "energy", "fitted"])
def test_nce_gradient_vanishes_in_expectation_at_the_truth(noise_kind):
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    a = torch.tensor([[1.1, 0.0], [-0.4, 0.9]], dtype=torch.float64)
    model = LearnableGaussian(mean, a)
    chol = torch.linalg.cholesky(torch.linalg.inv(model.precision.detach()))
    g = torch.Generator().manual_seed(4)
    noise = {"dataset": GaussianNoise([0.3, -0.8], 1.5),
             "energy": ebmcore.create("energy", "gaussian", mean=[0.3, -0.8],
                                      cov=[[2.0, 0.0], [0.0, 2.0]]),
             "fitted": None}[noise_kind]
    loss = ebmcore.create("loss", "nce", noise=noise, init_log_z=model.log_z, noise_scale=1.5,
                          generator=g)
    if noise_kind == "fitted":  # fit the noise once, then hold it fixed
        loss(model, mean + torch.randn(4096, 2, generator=g, dtype=torch.float64) @ chol.T)
        assert loss.noise_mean.shape == (2,) and "noise_std" in loss.state_dict()
    draws = []
    for _ in range(150):
        x = mean + torch.randn(256, 2, generator=g, dtype=torch.float64) @ chol.T
        draws.append(_grads(loss, model, x)[1])
    draws = torch.stack(draws)
    mcse = draws.std(0) / draws.shape[0] ** 0.5
    assert (draws.mean(0).abs() < 5 * mcse).all(), (draws.mean(0), mcse)


def test_nce_rejects_bad_noise():
    with pytest.raises(TypeError, match="noise must be"):
        ebmcore.create("loss", "nce", noise=3)
    with pytest.raises(ValueError, match="log_z"):
        ebmcore.create("loss", "nce", noise=ebmcore.create("model", "mlp", dim=2))
    with pytest.raises(ValueError, match="noise_ratio"):
        ebmcore.create("loss", "nce", noise_ratio=0)
