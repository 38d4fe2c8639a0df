"""Helpers of the fused-kernel tests: faced targets, fused samplers, MCSE comparisons."""

from __future__ import annotations

from typing import Any

import torch
from ebmcore_samplers.hmc import HMC
from ebmcore_samplers.kernels import FusedKernelSampler
from ebmcore_samplers.langevin import Langevin
from ebmcore_samplers.mala import MALA

import ebmcore


def fused(method: str, **kwargs: Any) -> Any:
    """A built-in sampler of ``method``; the three fused methods carry the fused backends.

    MALA and HMC get ``adapt_mass=None`` unless given and adapt each chain's step size on
    its own acceptance (``step_size_groups = 0``): the kernels adapt no mass and do not
    pool chains, and these tests compare the kernels with the torch backend on the same
    settings.
    """
    if method in ("mala", "hmc"):
        kwargs.setdefault("adapt_mass", None)
    sampler = {"langevin": Langevin, "mala": MALA, "hmc": HMC}[method](**kwargs)
    if method in ("mala", "hmc"):
        sampler.step_size_groups = 0
    assert isinstance(sampler, FusedKernelSampler)
    return sampler


def gaussian2(dtype: torch.dtype = torch.float64) -> ebmcore.Energy:
    """The registry's correlated 2-D Gaussian (mean (1, -1), correlation 0.6, sds 1 and 2)."""
    cov = torch.tensor([[1.0, 1.2], [1.2, 4.0]], dtype=torch.float64)
    return ebmcore.create("energy", "gaussian", mean=[1.0, -1.0], cov=cov).to(dtype)


def truth(energy: ebmcore.Energy) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and covariance of :func:`gaussian2` as its face sees it (float64)."""
    prec = torch.as_tensor(energy.numba_face().params[3:7]).reshape(2, 2)
    return torch.as_tensor(energy.numba_face().params[1:3]), torch.linalg.inv(prec)


def moment_z(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> dict[str, float]:
    """z-scores of the mean and covariance entries of independent rows ``x`` ``(B, 2)``.

    Each row is one independent chain's final state, so the MCSE of a moment is the
    standard deviation of its per-row values over ``sqrt(B)``.
    """
    x = x.double()
    n = x.shape[0]
    out = {}
    for i in range(2):
        out[f"mean{i}"] = float((x[:, i].mean() - mean[i]) / (x[:, i].std() / n**0.5))
    for i, j in ((0, 0), (0, 1), (1, 1)):
        prod = (x[:, i] - mean[i]) * (x[:, j] - mean[j])
        out[f"cov{i}{j}"] = float((prod.mean() - cov[i, j]) / (prod.std() / n**0.5))
    return out


def two_sample_z(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """z-scores of the difference of means and second moments of two independent samples."""
    a, b = a.double(), b.double()
    out = {}
    stats = {"m0": lambda x: x[:, 0], "m1": lambda x: x[:, 1], "s00": lambda x: x[:, 0] ** 2,
             "s01": lambda x: x[:, 0] * x[:, 1], "s11": lambda x: x[:, 1] ** 2}
    for name, f in stats.items():
        fa, fb = f(a), f(b)
        se = (fa.var() / fa.numel() + fb.var() / fb.numel()).sqrt()
        out[name] = float((fa.mean() - fb.mean()) / se)
    return out


def assert_within(zs: dict[str, float], tol: float = 4.5) -> None:
    """Every z-score within ``tol`` MCSE."""
    bad = {k: v for k, v in zs.items() if not abs(v) <= tol}
    assert not bad, f"off by more than {tol} MCSE: {bad} (all: {zs})"
