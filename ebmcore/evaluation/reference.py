"""The core's own reference energy: a Gaussian whose normaliser, samples and gradient are exact.

Evaluation needs a density it knows completely, as the start of annealed importance sampling
(:func:`ebmcore.evaluation.ais.ais`) and as a baseline; the core keeps that Gaussian here
rather than asking a plugin for one by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.validation import check_int, check_points


def _event_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not shape:
        raise TypeError(f"event_shape must be a non-empty sequence of positive integers, "
                        f"got {shape!r}")
    return tuple(check_int(f"event_shape[{i}]", s, minimum=1) for i, s in enumerate(shape))


class ReferenceGaussian(Energy):
    """``E(x) = ½ |L⁻¹ (x - mean)|²``, the Gaussian ``N(mean, L Lᵀ)`` over points of any shape.

    The covariance is given by its Cholesky factor ``scale_tril`` (full covariance) or by a
    per-coordinate standard deviation ``std`` (diagonal; a number for an isotropic one),
    never both; with neither it is the standard normal. Everything is exact: :attr:`log_z`,
    :meth:`sample`, the closed-form gradient ``Σ⁻¹ (x - mean)``, and :meth:`preconditioner`
    (``L``, which preconditioned samplers move by).

    Args:
        mean: The mean, shaped like one point (its shape is the energy's ``event_shape``).
        scale_tril: Lower-triangular ``(D, D)`` factor ``L`` with positive diagonal, ``D``
            the number of coordinates of one point.
        std: Standard deviations, a positive number or one per coordinate (shaped like
            ``mean`` or flat ``(D,)``).
    """

    normalisable = True

    def __init__(self, mean: Any, scale_tril: Any = None, std: Any = None) -> None:
        super().__init__()
        mean = torch.as_tensor(mean)
        if not mean.is_floating_point():
            mean = mean.to(torch.get_default_dtype())
        if mean.dim() == 0:
            raise ValueError("mean must be shaped like one point, got a scalar")
        self.event_shape = tuple(mean.shape)
        dim = mean.numel()
        if scale_tril is not None and std is not None:
            raise ValueError("give scale_tril (full covariance) or std (diagonal), not both")
        self.diagonal = scale_tril is None
        self.register_buffer("mean", mean.detach().clone())
        if self.diagonal:
            std = 1.0 if std is None else std
            std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
            std = std.expand(dim) if std.dim() == 0 else std.reshape(-1)
            if std.numel() != dim or not bool((std > 0).all()) or not bool(
                    torch.isfinite(std).all()):
                raise ValueError(f"std must be positive and finite, one value or {dim}, "
                                 f"got {tuple(std.shape)}")
            self.register_buffer("std", std.clone())
        else:
            tril = torch.as_tensor(scale_tril, dtype=mean.dtype, device=mean.device)
            if tuple(tril.shape) != (dim, dim):
                raise ValueError(f"scale_tril must be ({dim}, {dim}) for points of shape "
                                 f"{self.event_shape}, got {tuple(tril.shape)}")
            diagonal = tril.diagonal()
            if not bool((diagonal > 0).all()) or not bool(torch.isfinite(tril).all()):
                raise ValueError("scale_tril must be finite with a positive diagonal")
            tril = torch.tril(tril)
            self.register_buffer("scale_tril", tril.clone())
            eye = torch.eye(dim, dtype=tril.dtype, device=tril.device)
            self.register_buffer("whiten", torch.linalg.solve_triangular(tril, eye,
                                                                         upper=False))

    @classmethod
    def standard(cls, event_shape: Any, *, dtype: torch.dtype | None = None,
                 scale: float = 1.0) -> ReferenceGaussian:
        """The isotropic Gaussian ``N(0, scale² I)`` on points of shape ``event_shape``."""
        shape = _event_shape(event_shape)
        return cls(torch.zeros(shape, dtype=dtype or torch.get_default_dtype()), std=scale)

    @classmethod
    def fit(cls, x: torch.Tensor) -> ReferenceGaussian:
        """The full-covariance Gaussian fitted to ``x`` ``(N, *event_shape)`` by maximum
        likelihood (computed in float64, stored in ``x``'s dtype and device).

        Raises:
            ValueError: With no more points than coordinates, or a singular covariance.
        """
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError("x must be a tensor (N, *event_shape) of data points")
        x = check_points("x", x, tuple(x.shape[1:]))
        flat = x.detach().to(torch.float64).flatten(1)
        dim = flat.shape[1]
        if flat.shape[0] <= dim:
            raise ValueError(f"fitting a Gaussian in {dim} dimensions needs more than {dim} "
                             f"points, got {flat.shape[0]}")
        mean = flat.mean(0)
        centred = flat - mean
        tril, info = torch.linalg.cholesky_ex(centred.T @ centred / flat.shape[0])
        if int(info) != 0:
            raise ValueError("the data's covariance is singular (a constant or collinear "
                             "coordinate), so no Gaussian fits it")
        return cls(mean.view(x.shape[1:]).to(x.dtype), scale_tril=tril.to(x.dtype))

    @property
    def dim(self) -> int:
        """The number of coordinates ``D`` of one point."""
        return math.prod(self.event_shape)

    def factor(self) -> torch.Tensor:
        """The covariance's Cholesky factor ``L`` ``(D, D)`` (diagonal for ``std``)."""
        return torch.diag(self.std) if self.diagonal else self.scale_tril

    def _whitened(self, x: torch.Tensor) -> torch.Tensor:
        centred = (x - self.mean.to(x.dtype)).flatten(1)
        if self.diagonal:
            return centred / self.std.to(x.dtype)
        return centred @ self.whiten.to(x.dtype).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``½ |L⁻¹ (x - mean)|²`` ``(B,)`` for a batch ``x`` ``(B, *event_shape)``."""
        return 0.5 * self._whitened(x).square().sum(1)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies and the closed-form gradient ``Σ⁻¹ (x - mean)``."""
        z = self._whitened(x)
        g = z / self.std.to(x.dtype) if self.diagonal else z @ self.whiten.to(x.dtype)
        return 0.5 * z.square().sum(1), g.view_as(x)

    @property
    def log_z(self) -> float:
        """``½ D log 2π + log det L``, exact."""
        diag = self.std if self.diagonal else self.scale_tril.diagonal()
        return 0.5 * self.dim * math.log(2.0 * math.pi) + float(diag.double().log().sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples ``mean + L ε`` ``(n, *event_shape)`` on the mean's device
        (the noise is drawn on the generator's device)."""
        n = check_int("n", n, minimum=1)
        device = self.mean.device if generator is None else generator.device
        eps = torch.randn((n, self.dim), generator=generator, dtype=self.mean.dtype,
                          device=device).to(self.mean.device)
        draws = eps * self.std if self.diagonal else eps @ self.scale_tril.T
        return (draws + self.mean.flatten()).view(n, *self.event_shape)

    def preconditioner(self) -> torch.Tensor:
        """The factor ``L``: preconditioned samplers move by the Gaussian's own covariance."""
        return self.factor()

    def extra_repr(self) -> str:
        kind = "diagonal" if self.diagonal else "full"
        return f"event_shape={self.event_shape}, covariance={kind}"
