"""Classic test energies: double well, harmonic, Rastrigin, Rosenbrock, Ackley, Himmelblau,
Styblinski–Tang. Each has a closed-form gradient and a numba face next to it."""

from __future__ import annotations

import math
from typing import Any

import torch

from ebmcore.energy import NumbaFace

from ._base import (
    AnalyticEnergy,
    dim_arg,
    flat,
    is_scalar,
    real,
    register_params,
    safe_sqrt,
    tensor_param,
)

# -- double well ---------------------------------------------------------------------------------


class DoubleWell(AnalyticEnergy):
    """Double well along the first axis, harmonic in the others.

    ``E(x) = h ((x_0 / c)² - 1)² + ½ Σ_{i≥1} x_i²``: two wells at ``x_0 = ±c`` separated by
    a barrier of height ``h`` at ``x_0 = 0``.

    Args:
        dim: Dimension ``D`` (at least 1).
        barrier: Barrier height ``h`` (positive).
        center: Well position ``c`` (positive).
    """

    def __init__(self, dim: int = 2, barrier: float = 2.0, center: float = 1.0) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim),)
        register_params(self, barrier=real("barrier", barrier, positive=True),
                        center=real("center", center, positive=True))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        # In place on one temporary, like the gradient: samplers call these on every chain.
        h, c = self._number("barrier"), self._number("center")
        w = x[:, 0].square().mul_(1.0 / (c * c)).sub_(1.0)  # (x0 / c)^2 - 1
        return self._add_harmonic_rest(w.square_().mul_(h), x)

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        h, c = self._number("barrier"), self._number("center")
        g = x.clone()
        u = x[:, 0]
        # 4h/c (u/c)((u/c)^2 - 1) = (4h/c^4) u^3 - (4h/c^2) u: three passes over one
        # temporary, the last writing straight into g's first column (measured 13 % less
        # than dividing first and assigning the column).
        w = u.square().mul_(4.0 * h / (c * c * c * c)).sub_(4.0 * h / (c * c))
        torch.mul(w, u, out=g[:, 0])
        return g

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = self._number("barrier"), self._number("center")
        g = x.clone()
        u = x[:, 0]
        w = u.square().mul_(1.0 / (c * c)).sub_(1.0)  # (u / c)^2 - 1
        torch.mul(w, u.mul(4.0 * h / (c * c)), out=g[:, 0])
        return self._add_harmonic_rest(w.square_().mul_(h), x), g

    @staticmethod
    def _add_harmonic_rest(e: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``e += ½ Σ_{i≥1} x_i²`` in place (no temporary in the common 2-D case)."""
        if x.shape[1] == 2:
            e.addcmul_(x[:, 1], x[:, 1], value=0.5)
        elif x.shape[1] > 2:
            e.add_(torch.linalg.vecdot(x[:, 1:], x[:, 1:]), alpha=0.5)
        return e

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, h, c]``."""
        d = self.event_shape[0]
        return NumbaFace(double_well_energy, double_well_grad,
                         flat(d, self.barrier, self.center), d)


def double_well_energy(x, p):
    """h ((x0/c)² - 1)² + ½ Σ_{i≥1} x_i², ``p = [D, h, c]``."""
    d = int(p[0])
    u = x[0] / p[2]
    s = 0.0
    for i in range(1, d):
        s += x[i] * x[i]
    return p[1] * (u * u - 1.0) ** 2 + 0.5 * s


def double_well_grad(x, p, out):
    """Gradient of :func:`double_well_energy`."""
    d = int(p[0])
    u = x[0] / p[2]
    out[0] = 4.0 * p[1] * u * (u * u - 1.0) / p[2]
    for i in range(1, d):
        out[i] = x[i]


# -- harmonic ---------------------------------------------------------------------------------


class Harmonic(AnalyticEnergy):
    """Harmonic well ``E(x) = ½ Σ_i k_i (x_i - c_i)²`` (a Gaussian with variances ``1/k_i``).

    ``log_z = Σ_i ½ log(2π / k_i)``; :meth:`sample` is exact.

    Args:
        dim: Dimension ``D``.
        stiffness: Spring constant ``k`` (positive), one number or a vector of ``D``.
        center: Rest position ``c``, a vector of ``D`` (default the origin).
    """

    def __init__(self, dim: int = 2, stiffness: Any = 1.0, center: Any = None) -> None:
        super().__init__()
        d = dim_arg("dim", dim)
        self.event_shape = (d,)
        if is_scalar(stiffness):
            k = torch.full((d,), real("stiffness", stiffness, positive=True), dtype=torch.float64)
        else:
            k = tensor_param("stiffness", stiffness, shape=(d,), positive=True)
        c = (torch.zeros(d, dtype=torch.float64) if center is None
             else tensor_param("center", center, shape=(d,)))
        register_params(self, stiffness=k, center=c)

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._cast(self.center, x)) * self._cast(self.stiffness, x)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        diff = x - self._cast(self.center, x)
        return 0.5 * (self._cast(self.stiffness, x) * diff * diff).sum(-1)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = x - self._cast(self.center, x)
        g = diff * self._cast(self.stiffness, x)
        return 0.5 * (g * diff).sum(-1), g

    @property
    def log_z(self) -> float:
        """``Σ_i ½ log(2π / k_i)``."""
        return float((0.5 * (2 * math.pi / self.stiffness.double()).log()).sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples ``c + z / sqrt(k)``.

        Args:
            n: Number of samples.
            generator: Optional torch generator on the parameters' device.
        """
        dtype, _ = self._home()
        z = self._randn(n, self.event_shape[0], generator=generator)
        return (self.center.double() + z / self.stiffness.double().sqrt()).to(dtype)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, k (D), c (D)]``."""
        d = self.event_shape[0]
        return NumbaFace(harmonic_energy, harmonic_grad, flat(d, self.stiffness, self.center), d)


def harmonic_energy(x, p):
    """½ Σ k_i (x_i - c_i)², ``p = [D, k, c]``."""
    d = int(p[0])
    s = 0.0
    for i in range(d):
        di = x[i] - p[1 + d + i]
        s += p[1 + i] * di * di
    return 0.5 * s


def harmonic_grad(x, p, out):
    """Gradient of :func:`harmonic_energy`."""
    d = int(p[0])
    for i in range(d):
        out[i] = p[1 + i] * (x[i] - p[1 + d + i])


# -- Rastrigin --------------------------------------------------------------------------------


class Rastrigin(AnalyticEnergy):
    """Rastrigin: ``E(x) = A D + Σ_i (x_i² - A cos(2π x_i))``, a grid of local minima.

    Args:
        dim: Dimension ``D``.
        a: Amplitude ``A`` of the cosine ripples (positive; 10 is the classic value).
    """

    def __init__(self, dim: int = 2, a: float = 10.0) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim),)
        register_params(self, a=real("a", a, positive=True))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[1]
        return self.a * d + (x * x - self.a * torch.cos(2 * math.pi * x)).sum(-1)

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x + (2 * math.pi) * self.a * torch.sin(2 * math.pi * x)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._energy(x), self._grad(x)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, A]``."""
        d = self.event_shape[0]
        return NumbaFace(rastrigin_energy, rastrigin_grad, flat(d, self.a), d)


def rastrigin_energy(x, p):
    """A D + Σ (x_i² - A cos 2πx_i), ``p = [D, A]``."""
    d = int(p[0])
    s = p[1] * d
    for i in range(d):
        s += x[i] * x[i] - p[1] * math.cos(2.0 * math.pi * x[i])
    return s


def rastrigin_grad(x, p, out):
    """Gradient of :func:`rastrigin_energy`."""
    d = int(p[0])
    for i in range(d):
        out[i] = 2.0 * x[i] + 2.0 * math.pi * p[1] * math.sin(2.0 * math.pi * x[i])


# -- Rosenbrock -------------------------------------------------------------------------------


class Rosenbrock(AnalyticEnergy):
    """Rosenbrock: ``E(x) = Σ_{i<D-1} [b (x_{i+1} - x_i²)² + (a - x_i)²]``.

    In two dimensions the density factorises (``x_0 ~ N(a, ½)``, ``x_1 | x_0 ~ N(x_0², 1/(2b))``),
    so for ``dim=2`` the energy declares ``log_z = log(π / sqrt(b))`` and exact samples.

    Args:
        dim: Dimension ``D`` (at least 2).
        a: Location of the minimum ``(a, a², …)`` along the first coordinate.
        b: Valley steepness (positive; 100 is the classic value).
    """

    def __init__(self, dim: int = 2, a: float = 1.0, b: float = 100.0) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim, minimum=2),)
        register_params(self, a=real("a", a), b=real("b", b, positive=True))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[:, :-1], x[:, 1:]
        return (self.b * (tail - head * head) ** 2 + (self.a - head) ** 2).sum(-1)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head, tail = x[:, :-1], x[:, 1:]
        r = tail - head * head
        s = self.a - head
        e = (self.b * r * r + s * s).sum(-1)
        g = torch.zeros_like(x)
        g[:, :-1] = -4 * self.b * head * r - 2 * s
        g[:, 1:] += 2 * self.b * r
        return e, g

    @property
    def log_z(self) -> float | None:
        """``log(π / sqrt(b))`` for ``dim=2``; ``None`` (unknown) otherwise."""
        if self.event_shape[0] != 2:
            return None
        return math.log(math.pi) - 0.5 * math.log(float(self.b))

    @property
    def has_exact_sampler(self) -> bool:
        """Exact samples exist for ``dim=2`` only."""
        return self.event_shape[0] == 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples (``dim=2`` only): ``x_0 ~ N(a, ½)``, ``x_1 ~ N(x_0², 1/(2b))``.

        Args:
            n: Number of samples.
            generator: Optional torch generator on the parameters' device.
        """
        if self.event_shape[0] != 2:
            raise NotImplementedError("Rosenbrock draws exact samples only for dim=2")
        dtype, _ = self._home()
        z = self._randn(n, 2, generator=generator)
        x0 = self.a.double() + z[:, 0] * math.sqrt(0.5)
        x1 = x0 * x0 + z[:, 1] / (2 * self.b.double()).sqrt()
        return torch.stack([x0, x1], dim=1).to(dtype)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, a, b]``."""
        d = self.event_shape[0]
        return NumbaFace(rosenbrock_energy, rosenbrock_grad, flat(d, self.a, self.b), d)


def rosenbrock_energy(x, p):
    """Σ b (x_{i+1} - x_i²)² + (a - x_i)², ``p = [D, a, b]``."""
    d = int(p[0])
    s = 0.0
    for i in range(d - 1):
        r = x[i + 1] - x[i] * x[i]
        t = p[1] - x[i]
        s += p[2] * r * r + t * t
    return s


def rosenbrock_grad(x, p, out):
    """Gradient of :func:`rosenbrock_energy`."""
    d = int(p[0])
    for i in range(d):
        out[i] = 0.0
    for i in range(d - 1):
        r = x[i + 1] - x[i] * x[i]
        out[i] += -4.0 * p[2] * x[i] * r - 2.0 * (p[1] - x[i])
        out[i + 1] += 2.0 * p[2] * r


# -- Ackley -----------------------------------------------------------------------------------


class Ackley(AnalyticEnergy):
    """Ackley: ``E(x) = -a exp(-b sqrt(mean_i x_i²)) - exp(mean_i cos(c x_i)) + a + e``.

    The square root has a cone at the origin; the gradient there is taken as 0 (the
    symmetric subgradient), so it stays finite, in closed form and under autograd. ``E``
    is bounded, so ``exp(-E)`` is not normalisable on R^D: combine it with a confining
    energy (``sum`` with ``harmonic``) before sampling.

    Args:
        dim: Dimension ``D``.
        a: Depth of the central funnel (positive; 20 is classic).
        b: Decay rate of the funnel (positive; 0.2 is classic).
        c: Frequency of the ripples (positive; 2π is classic).
    """

    def __init__(self, dim: int = 2, a: float = 20.0, b: float = 0.2,
                 c: float = 2 * math.pi) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim),)
        register_params(self, a=real("a", a, positive=True), b=real("b", b, positive=True),
                        c=real("c", c, positive=True))

    def _radius(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``r = sqrt(mean x²)`` and ``positive = r > 0``, safe for autograd at 0."""
        return safe_sqrt((x * x).mean(-1))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        r, _ = self._radius(x)
        cos_mean = torch.cos(self.c * x).mean(-1)
        return -self.a * torch.exp(-self.b * r) - torch.exp(cos_mean) + self.a + math.e

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = x.shape[1]
        r, positive = self._radius(x)
        cx = self.c * x
        t1 = self.a * torch.exp(-self.b * r)
        t2 = torch.exp(torch.cos(cx).mean(-1))
        e = -t1 - t2 + self.a + math.e
        # d/dx_i of -a exp(-b r) is a b exp(-b r) x_i / (D r); 0 at the origin.
        coef = torch.where(positive, self.b * t1 / (d * torch.where(positive, r,
                                                                    torch.ones_like(r))),
                           torch.zeros_like(r))
        g = coef[:, None] * x + (t2 * self.c / d)[:, None] * torch.sin(cx)
        return e, g

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, a, b, c]``."""
        d = self.event_shape[0]
        return NumbaFace(ackley_energy, ackley_grad, flat(d, self.a, self.b, self.c), d)


def ackley_energy(x, p):
    """Ackley energy, ``p = [D, a, b, c]``."""
    d = int(p[0])
    ss = 0.0
    cs = 0.0
    for i in range(d):
        ss += x[i] * x[i]
        cs += math.cos(p[3] * x[i])
    r = math.sqrt(ss / d)
    return -p[1] * math.exp(-p[2] * r) - math.exp(cs / d) + p[1] + math.e


def ackley_grad(x, p, out):
    """Gradient of :func:`ackley_energy` (0 for the cone term at the origin)."""
    d = int(p[0])
    ss = 0.0
    cs = 0.0
    for i in range(d):
        ss += x[i] * x[i]
        cs += math.cos(p[3] * x[i])
    r = math.sqrt(ss / d)
    coef = 0.0
    if r > 0.0:
        coef = p[1] * p[2] * math.exp(-p[2] * r) / (d * r)
    t2 = math.exp(cs / d) * p[3] / d
    for i in range(d):
        out[i] = coef * x[i] + t2 * math.sin(p[3] * x[i])


# -- Himmelblau -------------------------------------------------------------------------------


class Himmelblau(AnalyticEnergy):
    """Himmelblau (2-D): ``E(x, y) = (x² + y - 11)² + (x + y² - 7)²``, four equal minima.

    Args:
        scale: Multiplies the energy (positive; ``exp(-scale·E)``). 1 is classic.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.event_shape = (2,)
        register_params(self, scale=real("scale", scale, positive=True))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x[:, 0], x[:, 1]
        return self.scale * ((u * u + v - 11) ** 2 + (u + v * v - 7) ** 2)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, v = x[:, 0], x[:, 1]
        p = u * u + v - 11
        q = u + v * v - 7
        g = torch.stack([4 * u * p + 2 * q, 2 * p + 4 * v * q], dim=1) * self.scale
        return self.scale * (p * p + q * q), g

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [2, scale]``."""
        return NumbaFace(himmelblau_energy, himmelblau_grad, flat(2, self.scale), 2)


def himmelblau_energy(x, p):
    """s ((x²+y-11)² + (x+y²-7)²), ``p = [2, s]``."""
    a = x[0] * x[0] + x[1] - 11.0
    b = x[0] + x[1] * x[1] - 7.0
    return p[1] * (a * a + b * b)


def himmelblau_grad(x, p, out):
    """Gradient of :func:`himmelblau_energy`."""
    a = x[0] * x[0] + x[1] - 11.0
    b = x[0] + x[1] * x[1] - 7.0
    out[0] = p[1] * (4.0 * x[0] * a + 2.0 * b)
    out[1] = p[1] * (2.0 * a + 4.0 * x[1] * b)


# -- Styblinski–Tang --------------------------------------------------------------------------


class StyblinskiTang(AnalyticEnergy):
    """Styblinski–Tang: ``E(x) = ½ Σ_i (x_i⁴ - 16 x_i² + 5 x_i)``, ``2^D`` local minima.

    Args:
        dim: Dimension ``D``.
        scale: Multiplies the energy (positive). 1 is classic.
    """

    def __init__(self, dim: int = 2, scale: float = 1.0) -> None:
        super().__init__()
        self.event_shape = (dim_arg("dim", dim),)
        register_params(self, scale=real("scale", scale, positive=True))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x * x
        return (0.5 * self.scale) * (x2 * x2 - 16 * x2 + 5 * x).sum(-1)

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (2 * x * x * x - 16 * x + 2.5)

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._energy(x), self._grad(x)

    def numba_face(self) -> NumbaFace:
        """Numba face; ``p = [D, scale]``."""
        d = self.event_shape[0]
        return NumbaFace(styblinski_tang_energy, styblinski_tang_grad, flat(d, self.scale), d)


def styblinski_tang_energy(x, p):
    """½ s Σ (x⁴ - 16x² + 5x), ``p = [D, s]``."""
    d = int(p[0])
    s = 0.0
    for i in range(d):
        x2 = x[i] * x[i]
        s += x2 * x2 - 16.0 * x2 + 5.0 * x[i]
    return 0.5 * p[1] * s


def styblinski_tang_grad(x, p, out):
    """Gradient of :func:`styblinski_tang_energy`."""
    d = int(p[0])
    for i in range(d):
        out[i] = p[1] * (2.0 * x[i] * x[i] * x[i] - 16.0 * x[i] + 2.5)
