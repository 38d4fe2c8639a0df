"""Sample-based discrepancies: MMD between two samples, kernel Stein discrepancy to an energy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.validation import check_int, check_points, check_positive


@dataclass
class TestResult:
    """A discrepancy statistic with its test of "no difference".

    Attributes:
        statistic: The unbiased (U-statistic) squared discrepancy; it can be slightly
            negative when the two sides agree.
        p_value: Permutation (MMD) or wild-bootstrap (KSD) p-value of the null hypothesis
            that there is no difference; ``(1 + #{null >= observed}) / (1 + n_null)``.
        bandwidth: The kernel scale used (Gaussian bandwidth for MMD, IMQ ``c`` for KSD).
    """

    __test__ = False  # not a pytest class

    statistic: float
    p_value: float
    bandwidth: float


def _flat(name: str, x: torch.Tensor) -> torch.Tensor:
    x = check_points(name, x)
    if x.shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 points, got {x.shape[0]}")
    return x.detach().flatten(1).to(torch.float64)


def median_bandwidth(z: torch.Tensor) -> float:
    """Return the median pairwise Euclidean distance of the rows of ``z`` (the median heuristic).

    Args:
        z: Points ``(N, D)``.
    """
    d = torch.cdist(z, z)
    off = d[~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)]
    h = float(off.median())
    if h <= 0:
        raise ValueError("the median pairwise distance is zero (repeated points); pass "
                         "bandwidth= explicitly")
    return h


def mmd(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float | None = None,
        n_permutations: int = 500, generator: torch.Generator | None = None) -> TestResult:
    """Maximum mean discrepancy with a Gaussian kernel and a permutation test.

    Args:
        x: First sample ``(M, *event_shape)``.
        y: Second sample ``(N, *event_shape)`` of the same event shape.
        bandwidth: Kernel scale ``h`` in ``exp(-|a - b|² / (2h²))``; ``None`` uses the median
            pairwise distance of the pooled sample.
        n_permutations: Random relabellings for the p-value.
        generator: Source of randomness for the permutations.
    """
    a, b = _flat("x", x), _flat("y", y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must share an event shape, got {tuple(x.shape[1:])} and "
                         f"{tuple(y.shape[1:])}")
    check_int("n_permutations", n_permutations, minimum=1)
    z = torch.cat([a, b.to(a.device)])
    h = median_bandwidth(z) if bandwidth is None else check_positive("bandwidth", bandwidth)
    k = torch.exp(-torch.cdist(z, z).pow(2) / (2 * h * h))
    k.fill_diagonal_(0.0)  # U-statistic: no i == j terms
    m, n = a.shape[0], b.shape[0]

    def stat(labels: torch.Tensor) -> torch.Tensor:  # labels (P, M+N) of 1.0 for the x side
        kl = labels @ k
        xx = (kl * labels).sum(1)
        xy = (kl * (1 - labels)).sum(1)
        yy = k.sum() - 2 * xy - xx
        return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)

    observed = torch.zeros(1, m + n, dtype=torch.float64, device=z.device)
    observed[0, :m] = 1.0
    value = float(stat(observed)[0])
    exceed = 0
    gen_device = generator.device if generator is not None else torch.device("cpu")
    for start in range(0, n_permutations, 100):
        p = min(100, n_permutations - start)
        keys = torch.rand((p, m + n), generator=generator, device=gen_device)
        labels = (keys.argsort(1) < m).to(torch.float64).to(z.device)
        exceed += int((stat(labels) >= value).sum())
    return TestResult(statistic=value, p_value=(1 + exceed) / (1 + n_permutations),
                      bandwidth=h)


def stein_kernel_matrix(x: torch.Tensor, score: torch.Tensor, c: float = 1.0,
                        beta: float = -0.5) -> torch.Tensor:
    """Return the Stein kernel ``u_p(x_i, x_j)`` of the IMQ base kernel ``(c² + r²)^β``.

    Args:
        x: Points ``(N, D)``.
        score: The model score ``-∇E`` at those points ``(N, D)``.
        c: IMQ scale.
        beta: IMQ exponent in ``(-1, 0)``.
    """
    d = x[:, None, :] - x[None, :, :]
    r2 = d.pow(2).sum(-1)
    base = c * c + r2
    k = base.pow(beta)
    dim = x.shape[1]
    ss = score @ score.T
    # s_i·∇_{x_j}k + s_j·∇_{x_i}k = 2β base^(β-1) (s_j - s_i)·(x_i - x_j)
    sd_i = (score[:, None, :] * d).sum(-1)
    sd_j = (score[None, :, :] * d).sum(-1)
    cross = 2 * beta * base.pow(beta - 1) * (sd_j - sd_i)
    trace = (-2 * beta * dim * base.pow(beta - 1)
             - 4 * beta * (beta - 1) * r2 * base.pow(beta - 2))
    return ss * k + cross + trace


def ksd(x: torch.Tensor, energy: Energy, *, c: float = 1.0, beta: float = -0.5,
        n_bootstrap: int = 500, generator: torch.Generator | None = None) -> TestResult:
    """Kernel Stein discrepancy of a sample from an energy, with an IMQ kernel.

    Needs only the score ``-∇E``, so ``Z`` is never required (Gorham & Mackey 2017; the IMQ
    kernel detects non-convergence). The p-value comes from a Rademacher wild bootstrap of
    the degenerate U-statistic (Liu, Lee & Jordan 2016).

    Args:
        x: The sample ``(N, *event_shape)``.
        energy: The energy whose distribution ``x`` should follow.
        c: IMQ scale.
        beta: IMQ exponent in ``(-1, 0)``.
        n_bootstrap: Bootstrap replicates for the p-value.
        generator: Source of randomness for the bootstrap.
    """
    energy = as_energy(energy)
    pts = check_points("x", x, energy.event_shape)
    if pts.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 points, got {pts.shape[0]}")
    c = check_positive("c", c)
    if not -1.0 < beta < 0.0:
        raise ValueError(f"beta must lie in (-1, 0), got {beta}")
    check_int("n_bootstrap", n_bootstrap, minimum=1)
    score = -energy.grad(pts.detach())
    flat = pts.detach().flatten(1).to(torch.float64)
    u = stein_kernel_matrix(flat, score.flatten(1).to(torch.float64), c, beta)
    u.fill_diagonal_(0.0)
    n = flat.shape[0]
    value = float(u.sum() / (n * (n - 1)))
    gen_device = generator.device if generator is not None else torch.device("cpu")
    w = torch.randint(0, 2, (n_bootstrap, n), generator=generator, device=gen_device)
    w = (2 * w - 1).to(torch.float64).to(u.device)
    null = ((w @ u) * w).sum(1) / (n * (n - 1))
    exceed = int((null >= value).sum())
    return TestResult(statistic=value, p_value=(1 + exceed) / (1 + n_bootstrap), bandwidth=c)
