"""Energies with exact samplers and normalisers: banana, Neal's funnel, ring."""

from __future__ import annotations

import math

import torch

from ebmcore.energy import NumbaFace

from ._base import AnalyticEnergy, dim_arg, flat, real, register_params, safe_sqrt

# -- banana -----------------------------------------------------------------------------------


class Banana(AnalyticEnergy):
    """Twisted-Gaussian banana (Haario et al.), any ``D >= 2``.

    Generative form: ``x_0 ~ N(0, s²)``, ``x_1 | x_0 ~ N(b (x_0² - s²), 1)`` and
    ``x_i ~ N(0, 1)`` for ``i >= 2``, so that every coordinate has mean 0. The energy is

    ``E(x) = x_0² / (2 s²) + ½ (x_1 - b (x_0² - s²))² + ½ Σ_{i≥2} x_i²``

    with ``log_z = ½ D log(2π) + log s``; :meth:`sample` draws the generative form exactly.

    Args:
        dim: Dimension ``D`` (at least 2).
        curvature: Bend ``b`` of the banana (any finite number; 0 gives a Gaussian).
        scale: Standard deviation ``s`` of ``x_0`` (positive).
    """

    def __init__(self, dim: int = 2, curvature: float = 0.5, scale: float = 2.0) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim, minimum=2),)
        register_params(self, curvature=real("curvature", curvature),
                        scale=real("scale", scale, positive=True))

    def _resid(self, x: torch.Tensor) -> torch.Tensor:
        s2 = self.scale * self.scale
        return x[:, 1] - self.curvature * (x[:, 0] * x[:, 0] - s2)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        r = self._resid(x)
        return (0.5 * x[:, 0] ** 2 / (self.scale * self.scale) + 0.5 * r * r
                + 0.5 * (x[:, 2:] ** 2).sum(-1))

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self._resid(x)
        inv_s2 = 1.0 / (self.scale * self.scale)
        e = 0.5 * x[:, 0] ** 2 * inv_s2 + 0.5 * r * r + 0.5 * (x[:, 2:] ** 2).sum(-1)
        g = x.clone()
        g[:, 0] = x[:, 0] * inv_s2 - 2 * self.curvature * x[:, 0] * r
        g[:, 1] = r
        return e, g

    @property
    def log_z(self) -> float:
        """``½ D log(2π) + log s``."""
        return 0.5 * self.event_shape[0] * math.log(2 * math.pi) + math.log(float(self.scale))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples from the generative form.

        Args:
            n: Number of samples.
            generator: Optional torch generator on the parameters' device.
        """
        dtype, _ = self._home()
        z = self._randn(n, self.event_shape[0], generator=generator)
        s, b = self.scale.double(), self.curvature.double()
        x = z.clone()
        x[:, 0] = s * z[:, 0]
        x[:, 1] = z[:, 1] + b * (x[:, 0] ** 2 - s * s)
        return x.to(dtype)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, b, s]``."""
        d = self.event_shape[0]
        return NumbaFace(banana_energy, banana_grad, flat(d, self.curvature, self.scale), d)


def banana_energy(x, p):
    """Twisted-Gaussian banana energy, ``p = [D, b, s]``."""
    d = int(p[0])
    s2 = p[2] * p[2]
    r = x[1] - p[1] * (x[0] * x[0] - s2)
    e = 0.5 * x[0] * x[0] / s2 + 0.5 * r * r
    for i in range(2, d):
        e += 0.5 * x[i] * x[i]
    return e


def banana_grad(x, p, out):
    """Gradient of :func:`banana_energy`."""
    d = int(p[0])
    s2 = p[2] * p[2]
    r = x[1] - p[1] * (x[0] * x[0] - s2)
    out[0] = x[0] / s2 - 2.0 * p[1] * x[0] * r
    out[1] = r
    for i in range(2, d):
        out[i] = x[i]


# -- Neal's funnel ----------------------------------------------------------------------------


class Funnel(AnalyticEnergy):
    """Neal's funnel: ``v = x_0 ~ N(0, σ²)`` and ``x_i | v ~ N(0, e^v)`` for ``i = 1..D-1``.

    ``E(x) = v² / (2σ²) + ½ e^{-v} Σ_{i≥1} x_i² + ½ (D-1) v`` (the negative log density up
    to ``log_z = ½ log(2π σ²) + ½ (D-1) log(2π)``); :meth:`sample` is exact.

    Args:
        dim: Dimension ``D`` (at least 2; Neal used 10).
        scale: Standard deviation ``σ`` of ``v`` (positive; Neal used 3).
    """

    def __init__(self, dim: int = 10, scale: float = 3.0) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim, minimum=2),)
        register_params(self, scale=real("scale", scale, positive=True))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        v, rest = x[:, 0], x[:, 1:]
        d = x.shape[1]
        return (0.5 * v * v / (self.scale * self.scale)
                + 0.5 * torch.exp(-v) * (rest * rest).sum(-1) + 0.5 * (d - 1) * v)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v, rest = x[:, 0], x[:, 1:]
        d = x.shape[1]
        inv_s2 = 1.0 / (self.scale * self.scale)
        ev = torch.exp(-v)
        half_sq = 0.5 * ev * (rest * rest).sum(-1)
        e = 0.5 * v * v * inv_s2 + half_sq + 0.5 * (d - 1) * v
        g = torch.empty_like(x)
        g[:, 0] = v * inv_s2 - half_sq + 0.5 * (d - 1)
        g[:, 1:] = ev[:, None] * rest
        return e, g

    @property
    def log_z(self) -> float:
        """``½ log(2π σ²) + ½ (D-1) log(2π)``."""
        s = float(self.scale)
        return 0.5 * math.log(2 * math.pi * s * s) + 0.5 * (self.event_shape[0] - 1) * math.log(
            2 * math.pi)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples: ``v = σ z_0``, ``x_i = e^{v/2} z_i``.

        Args:
            n: Number of samples.
            generator: Optional torch generator on the parameters' device.
        """
        dtype, _ = self._home()
        z = self._randn(n, self.event_shape[0], generator=generator)
        v = self.scale.double() * z[:, :1]
        return torch.cat([v, torch.exp(0.5 * v) * z[:, 1:]], dim=1).to(dtype)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, σ]``."""
        d = self.event_shape[0]
        return NumbaFace(funnel_energy, funnel_grad, flat(d, self.scale), d)


def funnel_energy(x, p):
    """Neal's funnel energy, ``p = [D, σ]``."""
    d = int(p[0])
    v = x[0]
    ss = 0.0
    for i in range(1, d):
        ss += x[i] * x[i]
    return 0.5 * v * v / (p[1] * p[1]) + 0.5 * math.exp(-v) * ss + 0.5 * (d - 1) * v


def funnel_grad(x, p, out):
    """Gradient of :func:`funnel_energy`."""
    d = int(p[0])
    v = x[0]
    ev = math.exp(-v)
    ss = 0.0
    for i in range(1, d):
        ss += x[i] * x[i]
        out[i] = ev * x[i]
    out[0] = v / (p[1] * p[1]) - 0.5 * ev * ss + 0.5 * (d - 1)


# -- ring -------------------------------------------------------------------------------------


def _log_radial_integral(n: int, r: float, sigma: float) -> float:
    """``log ∫_0^∞ ρ^n exp(-(ρ - r)² / (2σ²)) dρ`` for ``r > 0``, in log space.

    ``I_0 = σ sqrt(π/2) (1 + erf(r / (σ√2)))``, ``I_1 = σ² exp(-r²/(2σ²)) + r I_0`` and,
    integrating by parts, ``I_n = r I_{n-1} + (n-1) σ² I_{n-2}``.
    """
    def log_add(a: float, b: float) -> float:
        hi, lo = max(a, b), min(a, b)
        return hi + math.log1p(math.exp(lo - hi))

    l0 = math.log(sigma * math.sqrt(math.pi / 2)) + math.log1p(math.erf(r / (sigma * math.sqrt(2))))
    if n == 0:
        return l0
    l1 = log_add(2 * math.log(sigma) - r * r / (2 * sigma * sigma), math.log(r) + l0)
    for m in range(2, n + 1):
        l0, l1 = l1, log_add(math.log(r) + l1, math.log((m - 1) * sigma * sigma) + l0)
    return l1


class Ring(AnalyticEnergy):
    """Ring (a shell in ``D`` dimensions): ``E(x) = (‖x‖ - r)² / (2σ²)``.

    The norm has a cone at the origin; the gradient there is taken as 0 (the symmetric
    subgradient). ``log_z = log S_{D-1} + log ∫_0^∞ ρ^{D-1} e^{-(ρ-r)²/(2σ²)} dρ`` with the
    sphere area ``S_{D-1} = 2π^{D/2} / Γ(D/2)``, evaluated by a stable recursion.
    :meth:`sample` is exact: a uniform direction times a radius drawn by rejection from a
    Gaussian proposal centred at the radial mode (valid because the log radial density
    is ``1/σ²``-strongly concave).

    Args:
        dim: Dimension ``D``.
        radius: Ring radius ``r`` (positive).
        width: Radial standard deviation ``σ`` (positive).
    """

    def __init__(self, dim: int = 2, radius: float = 2.0, width: float = 0.5) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim),)
        register_params(self, radius=real("radius", radius, positive=True),
                        width=real("width", width, positive=True))

    def _norm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return safe_sqrt((x * x).sum(-1))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        rho, _ = self._norm(x)
        return 0.5 * (rho - self.radius) ** 2 / (self.width * self.width)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rho, positive = self._norm(x)
        inv_w2 = 1.0 / (self.width * self.width)
        dev = rho - self.radius
        coef = torch.where(positive, dev * inv_w2 / torch.where(positive, rho,
                                                                torch.ones_like(rho)),
                           torch.zeros_like(rho))
        return 0.5 * dev * dev * inv_w2, coef[:, None] * x

    @property
    def log_z(self) -> float:
        """Exact ``log ∫ exp(-E)`` (see the class docstring)."""
        d = self.event_shape[0]
        log_area = math.log(2.0) + 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d)
        return log_area + _log_radial_integral(d - 1, float(self.radius), float(self.width))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples: uniform direction, radius by exact rejection sampling.

        Args:
            n: Number of samples.
            generator: Optional torch generator on the parameters' device.
        """
        dtype, device = self._home()
        d = self.event_shape[0]
        z = self._randn(n, d, generator=generator)
        direction = z / z.norm(dim=1, keepdim=True)
        r, s, k = float(self.radius), float(self.width), d - 1
        mode = 0.5 * (r + math.sqrt(r * r + 4 * k * s * s))

        def log_target(rho: torch.Tensor) -> torch.Tensor:
            out = -(rho - r) ** 2 / (2 * s * s)
            return out + k * torch.log(rho / mode) if k else out

        log_peak = -(mode - r) ** 2 / (2 * s * s)
        radii = []
        need = n
        while need > 0:
            m = int(need * 1.5) + 16
            prop = mode + s * torch.randn(m, generator=generator, dtype=torch.float64,
                                          device=device)
            u = torch.rand(m, generator=generator, dtype=torch.float64, device=device)
            ok = prop > 0
            safe = torch.where(ok, prop, torch.ones_like(prop))
            # Accept with target / (peak · Gaussian envelope) <= 1 by strong concavity.
            log_ratio = log_target(safe) - log_peak + (safe - mode) ** 2 / (2 * s * s)
            keep = prop[ok & (torch.log(u) < log_ratio)][:need]
            radii.append(keep)
            need -= keep.numel()
        rho = torch.cat(radii) if radii else z.new_zeros(0)
        return (direction * rho[:, None]).to(dtype)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, r, σ]``."""
        d = self.event_shape[0]
        return NumbaFace(ring_energy, ring_grad, flat(d, self.radius, self.width), d)


def ring_energy(x, p):
    """(‖x‖ - r)² / (2σ²), ``p = [D, r, σ]``."""
    d = int(p[0])
    ss = 0.0
    for i in range(d):
        ss += x[i] * x[i]
    dev = math.sqrt(ss) - p[1]
    return 0.5 * dev * dev / (p[2] * p[2])


def ring_grad(x, p, out):
    """Gradient of :func:`ring_energy` (0 at the origin)."""
    d = int(p[0])
    ss = 0.0
    for i in range(d):
        ss += x[i] * x[i]
    coef = 0.0
    if ss > 0.0:
        rho = math.sqrt(ss)
        coef = (rho - p[1]) / (p[2] * p[2] * rho)
    for i in range(d):
        out[i] = coef * x[i]
