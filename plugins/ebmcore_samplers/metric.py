"""The mass matrix of the gradient samplers: identity, diagonal or dense, with its checks.

:class:`Metric` draws momenta ``p ~ N(0, M)`` and computes ``M^-1 p`` and the kinetic energy
for points flattened to ``(B, D)``. :func:`check_mass` and :func:`check_adapt_mass` validate
the ``mass`` and ``adapt_mass`` constructor arguments shared by ``mala``, ``hmc``, ``nuts``
and ``chees``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ebmcore_samplers import _common


class Metric:
    """A mass matrix ``M`` for momenta over flattened points ``(B, D)``.

    Args:
        mass: ``None`` (identity), a vector ``(D,)`` (diagonal) or a matrix ``(D, D)`` (dense,
            symmetric positive definite).
        dim: ``D``, to check ``mass`` against.
        dtype: Dtype of the chains.
        device: Device of the chains.
    """

    def __init__(self, mass: torch.Tensor | None, dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.dim = dim
        self.kind = "identity" if mass is None else ("diag" if mass.ndim == 1 else "dense")
        if mass is not None and mass.shape[0] != dim:
            raise ValueError(f"mass has size {mass.shape[0]} but the points have "
                             f"{dim} coordinates per chain")
        self._inv_factor: torch.Tensor | None = None
        if self.kind == "diag":
            self.inv = (1.0 / mass).to(dtype=dtype, device=device)
            self.sqrt = mass.sqrt().to(dtype=dtype, device=device)
        elif self.kind == "dense":
            mass64 = mass.to(torch.float64)
            self.inv = torch.linalg.inv(mass64).to(dtype=dtype, device=device)
            self.inv = 0.5 * (self.inv + self.inv.T)
            self.sqrt = torch.linalg.cholesky(mass64).T.to(dtype=dtype, device=device)

    @classmethod
    def from_covariance(cls, cov: torch.Tensor, dtype: torch.dtype,
                        device: torch.device) -> Metric:
        """The metric whose inverse mass is ``cov`` (a variance vector or covariance matrix)."""
        mass = 1.0 / cov if cov.ndim == 1 else torch.linalg.inv(cov)
        if cov.ndim == 2:
            mass = 0.5 * (mass + mass.T)
        return cls(mass, cov.shape[0], dtype, device)

    def draw_(self, p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fill ``p`` ``(B, D)`` with momenta ``~ N(0, M)``."""
        _common.randn_(p, generator)
        if self.kind == "diag":
            p.mul_(self.sqrt)
        elif self.kind == "dense":
            p.copy_(p @ self.sqrt)  # rows of xi @ L^T have covariance L L^T = M
        return p

    def velocity(self, p: torch.Tensor) -> torch.Tensor:
        """Return ``M^-1 p`` (``p`` itself for the identity)."""
        if self.kind == "identity":
            return p
        if self.kind == "diag":
            return p * self.inv
        return p @ self.inv

    def kinetic(self, p: torch.Tensor) -> torch.Tensor:
        """Return ``p^T M^-1 p / 2`` per chain ``(B,)``."""
        return 0.5 * torch.linalg.vecdot(p, self.velocity(p))

    def inverse_mass(self) -> torch.Tensor | None:
        """Return ``M^-1`` (vector or matrix), or ``None`` for the identity."""
        return None if self.kind == "identity" else self.inv

    def inverse_factor(self) -> torch.Tensor | None:
        """Return a factor ``L`` of the inverse mass, ``L Lᵀ = M^-1``: the vector
        ``sqrt(M^-1)`` (diagonal), the lower Cholesky factor (dense) or ``None`` (identity).

        Preconditioned MALA draws its noise as ``L xi`` (computed once per metric).
        """
        if self.kind == "identity":
            return None
        if getattr(self, "_inv_factor", None) is None:
            if self.kind == "diag":
                self._inv_factor = self.inv.sqrt()
            else:
                inv64 = self.inv.to(torch.float64)
                self._inv_factor = torch.linalg.cholesky(inv64).to(self.inv.dtype)
        return self._inv_factor


def check_mass(mass: Any) -> torch.Tensor | None:
    """Return ``mass`` as a float64 vector (diagonal) or matrix (dense), or ``None``.

    A vector must hold finite positive numbers, a matrix must be square, symmetric and
    positive definite; anything else raises naming ``mass``.
    """
    if mass is None:
        return None
    m = torch.as_tensor(mass, dtype=torch.float64)
    if m.ndim == 1:
        if not bool(torch.isfinite(m).all()) or not bool((m > 0).all()):
            raise ValueError("mass as a vector must hold finite positive numbers")
        return m
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"mass must be a vector (D,) or a square matrix (D, D), got shape "
                         f"{tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError("mass as a matrix must hold finite numbers")
    if not torch.allclose(m, m.T):
        raise ValueError("mass as a matrix must be symmetric")
    if torch.linalg.cholesky_ex(m).info != 0:
        low = float(torch.linalg.eigvalsh(m).min())
        raise ValueError(f"mass as a matrix must be positive definite; its smallest "
                         f"eigenvalue is {low:.3g}")
    return m


def check_adapt_mass(value: Any) -> str | None:
    """Return ``"diag"``, ``"dense"`` or ``None`` for an ``adapt_mass`` argument.

    The former spellings ``True`` (``"diag"``) and ``False`` (``None``) still work for one
    release, with a :class:`DeprecationWarning`.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        new = "'diag'" if value else "None"
        warnings.warn(f"adapt_mass={value} is deprecated; pass adapt_mass={new}",
                      DeprecationWarning, stacklevel=4)
        return "diag" if value else None
    if not isinstance(value, str):
        raise TypeError(f"adapt_mass must be 'diag', 'dense' or None, got {value!r}")
    if value in ("diag", "dense"):
        return value
    raise ValueError(f"adapt_mass must be 'diag', 'dense' or None, got {value!r}")
