"""Helpers of the core-sampler tests: call counting, small targets, MCSE comparisons."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ebmcore.energy import Energy


class BranchingEnergy(Energy):
    """A quadratic whose forward branches in Python on tensor values: dynamo cannot trace it
    (a graph break), so the compiled paths must refuse it."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.event_shape = (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.abs() > 1e6).any()):
            x = x.clamp(-1e6, 1e6)
        return 0.5 * x.square().sum(1)


class Counting(Energy):
    """Wrap an energy and count its evaluations by kind."""

    def __init__(self, inner: Energy) -> None:
        super().__init__()
        self.inner = inner
        self.event_shape = inner.event_shape
        self.calls = {"forward": 0, "grad": 0, "energy_and_grad": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls["forward"] += 1
        return self.inner(x)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        self.calls["grad"] += 1
        return self.inner.grad(x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls["energy_and_grad"] += 1
        return self.inner.energy_and_grad(x)

    @property
    def gradients(self) -> int:
        """Gradient evaluations of any kind."""
        return self.calls["grad"] + self.calls["energy_and_grad"]


class AutogradQuadratic(Energy):
    """``E(x) = |x|^2 / 2`` with the default autograd gradient (no closed form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.reshape(x.shape[0], -1).square().sum(1)


def independent_chain_z(values: torch.Tensor, truth: torch.Tensor | float,
                        truth_mcse: torch.Tensor | float = 0.0) -> torch.Tensor:
    """z-scores of per-chain time averages of ``values`` ``(T, C, ...)`` against ``truth``.

    The chains are independent, so the across-chain spread of their averages is the MCSE
    (autocorrelation included); ``truth_mcse`` adds the error of a Monte Carlo truth.
    """
    per_chain = values.mean(0)
    est = per_chain.mean(0)
    mcse = per_chain.std(0) / per_chain.shape[0] ** 0.5
    return (est - truth) / (mcse**2 + torch.as_tensor(truth_mcse) ** 2).sqrt()


def compare_with_exact(trajectory: torch.Tensor, exact: torch.Tensor,
                       statistics: dict[str, Callable[[torch.Tensor], torch.Tensor]],
                       tolerance: float = 5.0) -> dict[str, float]:
    """Check each statistic's MCMC average against its average over exact samples."""
    zs = {}
    for name, f in statistics.items():
        fe = f(exact.double())
        truth, truth_mcse = fe.mean(), fe.std() / fe.shape[0] ** 0.5
        z = independent_chain_z(f(trajectory.double()), truth, truth_mcse)
        zs[name] = float(z)
    bad = {k: v for k, v in zs.items() if not abs(v) <= tolerance}
    assert not bad, f"statistics off by more than {tolerance} MCSE: {bad} (all z: {zs})"
    return zs
