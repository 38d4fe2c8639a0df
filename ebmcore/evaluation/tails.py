"""Does an energy rise far away? The far-field probe behind every normalisability check.

``exp(-E)`` has a finite integral over ``R^D`` only if, far from the origin, it decays faster
than ``r^-D`` in every direction: in polar coordinates the radial integrand is
``r^(D-1) exp(-E(r u))``. :func:`far_field` measures that on rays: it evaluates the energy at
a few radii along many directions and reports the least log-log slope
``(E(r_2 u) - E(r_1 u)) / log(r_2 / r_1)`` over the outer pair of radii. A slope above ``D``
in every direction (and an energy at the largest radius above a reference, such as the
highest energy seen on the data) is the evidence :func:`ebmcore.evaluate.grid_evaluation` and
:func:`ebmcore.testing.check_energy` ask for. A probe on finitely many rays cannot prove
integrability; it catches the failure seen in practice: a network energy that falls, or stays
flat, in some direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.evaluation._model import eval_mode, placement
from ebmcore.validation import check_int


@dataclass
class FarField:
    """What :func:`far_field` found.

    Attributes:
        radii: The radii probed, increasing.
        min_energy: The least energy over the directions at each radius.
        min_log_slope: The least ``ΔE / Δlog r`` over directions, between the two largest
            radii (``inf`` where the energy is ``+inf`` at the largest radius).
        dim: The flattened event size ``D``; ``exp(-E)`` is integrable along a ray only if the
            slope eventually exceeds ``D``.
        reference_energy: The energy the far field must exceed (e.g. the highest on data), or
            ``None``.
        rises: Whether the slope exceeds ``D`` in every direction and the least energy at the
            largest radius exceeds ``reference_energy``.
        reason: Why ``rises`` is false (empty when it is true).
    """

    radii: list[float]
    min_energy: list[float]
    min_log_slope: float
    dim: int
    reference_energy: float | None
    rises: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a plain dict."""
        return asdict(self)


def directions(event_shape: Sequence[int], n: int, *, dtype: torch.dtype = torch.float64,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``n`` unit vectors of shape ``(n, *event_shape)``.

    In 2-D they are evenly spaced angles (no randomness); in more dimensions the ``2D``
    coordinate axes (both signs) come first when ``n`` allows, then seeded Gaussian draws.

    Args:
        event_shape: The shape of one point.
        n: How many directions.
        dtype: Floating dtype of the result.
        generator: Seeds the random directions (default ``torch.Generator().manual_seed(0)``).
    """
    check_int("n", n, minimum=1)
    shape = tuple(int(s) for s in event_shape)
    dim = math.prod(shape)
    if dim == 2:
        angles = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
        u = torch.stack([angles.cos(), angles.sin()], dim=1)
    else:
        eye = torch.eye(dim, dtype=torch.float64)
        axes = torch.cat([eye, -eye])[: n if n < 2 * dim else 2 * dim]
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        rest = torch.randn(n - axes.shape[0], dim, generator=gen, dtype=torch.float64)
        u = torch.cat([axes, rest / rest.norm(dim=1, keepdim=True)])
    return u.reshape(n, *shape).to(dtype)


@torch.no_grad()
def far_field(energy: Energy, center: torch.Tensor | float = 0.0,
              radii: Sequence[float] = (10.0, 100.0, 1000.0), *, n_directions: int = 64,
              reference_energy: float | None = None,
              generator: torch.Generator | None = None) -> FarField:
    """Probe ``energy`` along rays from ``center`` at increasing ``radii``.

    Args:
        energy: An energy with a known ``event_shape``.
        center: Where the rays start: a point of the event shape, or a number for every
            coordinate (typically the data's mean).
        radii: At least two increasing positive radii; the slope uses the last two.
        n_directions: Rays probed.
        reference_energy: The least energy at the largest radius must exceed this (the
            highest energy on the data, say); ``None`` skips that part.
        generator: Seeds the directions in more than two dimensions.
    """
    energy = as_energy(energy)
    if energy.event_shape is None:
        raise ValueError("far_field needs an energy with an event_shape")
    shape = tuple(energy.event_shape)
    radii = [float(r) for r in radii]
    if len(radii) < 2 or any(not math.isfinite(r) or r <= 0 for r in radii) or any(
            b <= a for a, b in zip(radii, radii[1:], strict=False)):
        raise ValueError(f"radii must be at least two increasing positive numbers, got {radii}")
    dtype, device = placement(energy, torch.float64)
    u = directions(shape, n_directions, dtype=torch.float64, generator=generator)
    c = torch.as_tensor(center, dtype=torch.float64).expand(shape)
    with eval_mode(energy):
        rows = [energy((c + r * u).to(device=device, dtype=dtype)).to(torch.float64).cpu()
                for r in radii]
    e = torch.stack(rows)  # (radius, direction)
    dim = math.prod(shape)
    min_energy = [float(v) for v in e.amin(1)]
    if bool(torch.isnan(e).any()) or bool((e == -math.inf).any()):
        return FarField(radii, min_energy, -math.inf, dim, reference_energy, False,
                        "the energy is NaN or -inf on some far-away points")
    rise = e[-1] - e[-2]
    rise = torch.where(e[-1] == math.inf, torch.full_like(rise, math.inf), rise)
    slope = float(rise.min()) / math.log(radii[-1] / radii[-2])
    reason = ""
    if not slope > dim:
        worst = int(rise.argmin())
        reason = (f"along some direction the energy rises by {float(rise[worst]):.4g} from radius "
                  f"{radii[-2]:g} to {radii[-1]:g}, a log-log slope of {slope:.3g}; exp(-E) "
                  f"is integrable only if it exceeds D = {dim}")
    elif reference_energy is not None and not min_energy[-1] > reference_energy:
        reason = (f"the least energy at radius {radii[-1]:g} is {min_energy[-1]:.4g}, not above "
                  f"the reference {reference_energy:.4g}")
    return FarField(radii, min_energy, slope, dim, reference_energy, not reason, reason)
