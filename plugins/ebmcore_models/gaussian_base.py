"""A full-covariance Gaussian fitted to the data, as the base term of a neural energy.

``E(x) = f(x) + ½ |W (x - μ)|²`` with ``W = L⁻¹`` for the data's covariance ``Σ = L Lᵀ``.
A network with Lipschitz activations grows at most linearly, so the quadratic dominates far
away and ``exp(-E)`` is a density whatever the weights, as with the wall of
:mod:`ebmcore_models.confinement`. Where the wall leaves a flat ball around the data, which in
many dimensions (an 8×8 image has 64) holds a volume no sampler or annealing path can cross,
the Gaussian already puts the mass where the data is: an untrained model *is* the Gaussian
fitted to the data, the network learns a correction to it, and the Gaussian, whose
normaliser and samples are exact, is the natural start of annealed importance sampling
(:meth:`GaussianBase.as_energy`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ebmcore.energy import Energy
from ebmcore.validation import check_int, check_points


class GaussianBase(nn.Module):
    """``½ |W (x - mean)|²`` per point, with ``mean`` and ``W = L⁻¹`` fitted from data.

    Before :meth:`fit` it is the standard normal's ``½ |x|²``.

    Args:
        event_shape: The shape of one point.
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        dim = math.prod(self.event_shape)
        self.register_buffer("mean", torch.zeros(self.event_shape))
        self.register_buffer("scale_tril", torch.eye(dim))  # L, with Σ = L Lᵀ
        self.register_buffer("whiten", torch.eye(dim))  # W = L⁻¹
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def dim(self) -> int:
        """The number of coordinates ``D`` of one point."""
        return math.prod(self.event_shape)

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Fix the mean and covariance by maximum likelihood from ``x`` ``(N, *event_shape)``.

        Raises:
            ValueError: When ``x`` holds fewer than ``D + 1`` points or its covariance is
                singular (constant or collinear coordinates; dequantised images never are).
        """
        x = check_points("x", x, self.event_shape)
        flat = x.detach().to(torch.float64).flatten(1)
        if flat.shape[0] <= self.dim:
            raise ValueError(f"fitting a Gaussian base in {self.dim} dimensions needs more than "
                             f"{self.dim} points, got {flat.shape[0]}")
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / flat.shape[0]
        tril, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError("the data's covariance is singular (a constant or collinear "
                             "coordinate), so no Gaussian base fits it; dequantise the data "
                             "or use confine='wall'")
        eye = torch.eye(self.dim, dtype=torch.float64)
        self.mean.copy_(mean.view(self.event_shape))
        self.scale_tril.copy_(tril)
        self.whiten.copy_(torch.linalg.solve_triangular(tril, eye, upper=False))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the base energy ``(B,)`` for a batch ``x`` of shape ``(B, *event_shape)``."""
        centred = (x - self.mean.to(x.dtype)).flatten(1)
        return 0.5 * (centred @ self.whiten.to(x.dtype).T).square().sum(1)

    @property
    def log_z(self) -> float:
        """``log ∫ exp(-½ |W (x - μ)|²) dx = ½ D log 2π + log det L``."""
        log_det = float(self.scale_tril.diagonal().double().log().sum())
        return 0.5 * self.dim * math.log(2.0 * math.pi) + log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples ``μ + L ε`` of shape ``(n, *event_shape)``."""
        n = check_int("n", n, minimum=1)
        device = self.mean.device if generator is None else generator.device
        eps = torch.randn((n, self.dim), generator=generator, dtype=self.mean.dtype,
                          device=device).to(self.mean.device)
        draws = eps @ self.scale_tril.to(eps.dtype).T + self.mean.flatten()
        return draws.view(n, *self.event_shape)

    def as_energy(self) -> BaseEnergy:
        """This Gaussian as an :class:`ebmcore.Energy` with exact samples and ``log_z``."""
        return BaseEnergy(self)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, fitted={bool(self.fitted)}"


class BaseEnergy(Energy):
    """A :class:`GaussianBase` seen as an energy: the start of annealed importance sampling.

    Args:
        base: The fitted Gaussian (shared, not copied).
    """

    def __init__(self, base: GaussianBase) -> None:
        super().__init__()
        self.base = base
        self.event_shape = base.event_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``½ |W (x - μ)|²`` for a batch ``x``."""
        return self.base(x)

    @property
    def log_z(self) -> float:
        """The Gaussian's exact log normaliser."""
        return self.base.log_z

    @property
    def has_exact_sampler(self) -> bool:
        """True: :meth:`sample` draws exact samples."""
        return True

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples."""
        return self.base.sample(n, generator)

    def preconditioner(self) -> torch.Tensor:
        """The covariance factor ``L``: samplers with ``precondition=True`` move by it."""
        return self.base.scale_tril
