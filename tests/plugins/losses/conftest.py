"""Shared stand-ins for the loss tests: a learnable Gaussian energy with closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler


class LearnableGaussian(Energy):
    """``E(x) = ½ (x - μ)ᵀ P (x - μ)`` with ``P = A Aᵀ``; ``μ`` and ``A`` are learnable."""

    def __init__(self, mean: torch.Tensor, a: torch.Tensor) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean.clone().double())
        self.a = nn.Parameter(a.clone().double())
        self.event_shape = (mean.shape[0],)

    @property
    def precision(self) -> torch.Tensor:
        return self.a @ self.a.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.mean
        return 0.5 * ((d @ self.precision) * d).sum(1)

    @property
    def log_z(self) -> float:
        dim = self.mean.shape[0]
        logdet = float(torch.logdet(self.precision.detach()))
        return 0.5 * dim * math.log(2 * math.pi) - 0.5 * logdet


class Frozen(Sampler):
    """A sampler that never moves its chains (to observe where chains start)."""

    def step(self, energy, state, generator=None):
        return state, {}


def closed_form_grads(objective, mean: torch.Tensor, a: torch.Tensor):
    """Gradient of a closed-form objective ``objective(mean, P)`` with respect to μ and A.

    The objective is written with no energy gradients, so its autograd is an independent
    check of a loss that differentiates through ``∇E``.
    """
    m = mean.clone().double().requires_grad_(True)
    aa = a.clone().double().requires_grad_(True)
    value = objective(m, aa @ aa.T)
    gm, ga = torch.autograd.grad(value, (m, aa))
    return value.detach(), gm, ga


def loss_grads(loss, model, x):
    """Value and parameter gradients of a loss module on one batch."""
    model.zero_grad(set_to_none=True)
    out = loss(model, x)
    out.loss.backward()
    return out, model.mean.grad.clone(), model.a.grad.clone()


@pytest.fixture
def gaussian_setup():
    """A 2-D learnable Gaussian away from the data, and Gaussian data."""
    true_mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    true_cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    chol = torch.linalg.cholesky(true_cov)
    g = torch.Generator().manual_seed(0)
    x = true_mean + torch.randn(512, 2, generator=g, dtype=torch.float64) @ chol.T
    model = LearnableGaussian(torch.tensor([0.1, 0.2]), torch.tensor([[1.2, 0.0], [0.3, 0.8]]))
    return model, x, true_mean, true_cov


