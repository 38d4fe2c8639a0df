"""Two analytic energies with closed-form gradients and a numba face.

Each energy gives ebmcore three things: ``forward`` (the energy of a batch), a closed-form
``energy_and_grad`` (so samplers skip autograd), and ``numba_face`` (plain-Python functions
over one point plus a flat parameter array, which the fused numba / numba.cuda backends
compile themselves).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ebmcore import Energy, NumbaFace
from ebmcore.validation import check_int, check_positive

# -- numba face: plain Python over one point, math/loops/indexing only -----------------------
# They live at module level so that a backend can memoise compiled kernels per function, and
# carry no type hints: numba infers the types when it compiles them.


def quartic_energy(x, p):
    """Energy of one point: ``p[0] * sum_i x_i^4``."""
    total = 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        total += xi * xi * xi * xi
    return p[0] * total


def quartic_grad(x, p, out):
    """Write ``4 * p[0] * x_i^3`` into ``out``."""
    scale = 4.0 * p[0]
    for i in range(x.shape[0]):
        xi = x[i]
        out[i] = scale * xi * xi * xi


# Mueller-Brown parameters packed as p = [beta, A(4), a(4), b(4), c(4), x0(4), y0(4)].
_MB_A = (-200.0, -100.0, -170.0, 15.0)
_MB_a = (-1.0, -1.0, -6.5, 0.7)
_MB_b = (0.0, 0.0, 11.0, 0.6)
_MB_c = (-10.0, -10.0, -6.5, 0.7)
_MB_X0 = (1.0, 0.0, -0.5, -1.0)
_MB_Y0 = (0.0, 0.5, 1.5, 1.0)


def mueller_brown_energy(x, p):
    """Energy of one 2-D point under packed Mueller-Brown parameters ``p``."""
    total = 0.0
    for k in range(4):
        dx = x[0] - p[17 + k]
        dy = x[1] - p[21 + k]
        total += p[1 + k] * math.exp(p[5 + k] * dx * dx + p[9 + k] * dx * dy
                                     + p[13 + k] * dy * dy)
    return p[0] * total


def mueller_brown_grad(x, p, out):
    """Write the gradient of :func:`mueller_brown_energy` at ``x`` into ``out``."""
    gx = 0.0
    gy = 0.0
    for k in range(4):
        dx = x[0] - p[17 + k]
        dy = x[1] - p[21 + k]
        t = p[1 + k] * math.exp(p[5 + k] * dx * dx + p[9 + k] * dx * dy + p[13 + k] * dy * dy)
        gx += t * (2.0 * p[5 + k] * dx + p[9 + k] * dy)
        gy += t * (p[9 + k] * dx + 2.0 * p[13 + k] * dy)
    out[0] = p[0] * gx
    out[1] = p[0] * gy


# -- torch energies ----------------------------------------------------------------------------


def _check_batch(energy: Energy, x: torch.Tensor) -> None:
    # A shape check only: it needs no host synchronisation, so it is free inside a sampler loop.
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != energy.event_shape:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        shape = ", ".join(map(str, energy.event_shape))
        raise ValueError(f"{type(energy).__name__} expects x of shape (B, {shape}), got {got}")


class QuarticBowl(Energy):
    """Separable quartic bowl ``E(x) = a * sum_i x_i^4`` in ``dim`` dimensions.

    Its normaliser is known exactly: ``log Z = dim * (lgamma(1/4) - log 2 - log(a) / 4)``, and
    each coordinate has mean 0 and variance ``Gamma(3/4) / Gamma(1/4) / sqrt(a)``.

    Args:
        dim: Number of dimensions (at least 1).
        a: Positive scale of the quartic term; larger means a narrower bowl.
    """

    def __init__(self, dim: int = 2, a: float = 1.0) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        self.a = check_positive("a", a)
        self.event_shape = (self.dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``a * sum_i x_i^4`` for each point of ``x`` ``(B, dim)``."""
        _check_batch(self, x)
        return self.a * x.pow(4).sum(dim=-1)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the energies and the closed-form gradient ``4 a x^3``."""
        _check_batch(self, x)
        x = x.detach()
        cube = x.pow(3)
        return self.a * (cube * x).sum(dim=-1), (4.0 * self.a) * cube

    @property
    def log_z(self) -> float:
        """Exact ``log ∫ exp(-E(x)) dx``."""
        return self.dim * (math.lgamma(0.25) - math.log(2.0) - 0.25 * math.log(self.a))

    @property
    def variance(self) -> float:
        """Exact variance of each coordinate under ``p(x) ∝ exp(-E(x))``."""
        return math.exp(math.lgamma(0.75) - math.lgamma(0.25)) / math.sqrt(self.a)

    def numba_face(self) -> NumbaFace:
        """Return the plain-Python energy and gradient with ``a`` packed in ``params``."""
        return NumbaFace(quartic_energy, quartic_grad, np.array([self.a]), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, a={self.a}"


class MuellerBrown(Energy):
    """The Mueller-Brown potential, a 2-D benchmark with three minima, scaled by ``beta``.

    ``E(x, y) = beta * sum_k A_k exp(a_k dx^2 + b_k dx dy + c_k dy^2)`` with
    ``dx = x - x0_k``, ``dy = y - y0_k`` and the constants of Müller and Brown (1979). The
    deepest minimum is near ``(-0.558, 1.442)`` with ``E / beta ≈ -146.7``; ``beta`` is an
    inverse temperature (``beta = 1`` is very peaked, ``0.1`` lets chains cross barriers).

    Args:
        beta: Positive inverse temperature multiplying the potential.
    """

    event_shape = (2,)

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        self.beta = check_positive("beta", beta)
        # (4, 6) table of A, a, b, c, x0, y0; non-persistent: it is a constant, not state.
        table = torch.tensor([_MB_A, _MB_a, _MB_b, _MB_c, _MB_X0, _MB_Y0],
                             dtype=torch.float64).T.contiguous()
        self.register_buffer("table", table, persistent=False)

    def _terms(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _check_batch(self, x)
        t = self.table.to(dtype=x.dtype, device=x.device)
        amp, a, b, c, x0, y0 = t.unbind(dim=1)
        dx = x[:, :1] - x0  # (B, 4)
        dy = x[:, 1:] - y0
        terms = amp * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)
        return terms, a, b, c, dx, dy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of points ``x`` ``(B, 2)``."""
        terms = self._terms(x)[0]
        return self.beta * terms.sum(dim=-1)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the energies and the closed-form gradient, sharing the exponentials."""
        terms, a, b, c, dx, dy = self._terms(x.detach())
        gx = (terms * (2.0 * a * dx + b * dy)).sum(dim=-1)
        gy = (terms * (b * dx + 2.0 * c * dy)).sum(dim=-1)
        return self.beta * terms.sum(dim=-1), self.beta * torch.stack((gx, gy), dim=-1)

    def numba_face(self) -> NumbaFace:
        """Return the plain-Python energy and gradient with every constant in ``params``."""
        params = np.array([self.beta, *_MB_A, *_MB_a, *_MB_b, *_MB_c, *_MB_X0, *_MB_Y0])
        return NumbaFace(mueller_brown_energy, mueller_brown_grad, params, 2)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
