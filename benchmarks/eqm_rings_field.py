"""The exact equilibrium-matching field of the ``rings`` data set, and where descending it
sends Gaussian noise (why equilibrium matching misses its sample goal on ``rings``).

Equilibrium matching regresses one time-free field ``f(x)`` on ``c(t) u_t`` at the path's
points ``x_t = t x1 + (1 - t) x0`` (``u_t = x1 - x0``, ``t ~ U(0, 1)``), so the regression's
optimum is the posterior mean ``f*(x) = E[c(t) u_t | x_t = x]`` over the time, the data
point and the noise together. For ``rings`` (uniform angle on circles of radii 0.75, 1.5,
2.25, 3, radial noise 0.08) the field is radial, ``f*(x) = g(|x|) x / |x|``, and given the
time, the ring and the angle everything is Gaussian, so ``g`` is a quadrature over a grid of
times and angles (:func:`exact_field`). Descending it from ``N(0, I)`` is then a 1-D ODE in
the radius (:func:`descend`), integrated here for several lengths of the descent; the table
gives the share of samples nearest each ring (the data: 25 % each).

Run:  python benchmarks/eqm_rings_field.py [--ct truncated|constant] [--spans 0.25 0.5 1 2]

Output (``--ct truncated``, the default; a few minutes on one core): ``g`` is positive
(outward) on every ring but the outer one, where it crosses zero, so the outer ring is the
field's only attractor and a longer descent drains the inner rings into it (74 % on the
outer ring at span 1, 99 % at span 2). No choice of sampler changes this: the optimum itself
has no zero on the inner rings.
"""

from __future__ import annotations

import argparse
import math

import torch

RADII = (0.75, 1.5, 2.25, 3.0)
NOISE = 0.08


def scale(t: torch.Tensor, ct: str, multiplier: float = 4.0, threshold: float = 0.8
          ) -> torch.Tensor:
    """Equilibrium matching's target scale ``c(t)`` (``ebmcore_losses.equilibrium_matching``)."""
    if ct == "truncated":
        return multiplier * torch.clamp((1 - t) / (1 - threshold), max=1.0)
    if ct == "constant":
        return torch.full_like(t, multiplier)
    raise ValueError(f"ct must be 'truncated' or 'constant', got {ct!r}")


def exact_field(radius: torch.Tensor, ct: str, n_times: int = 2000, n_angles: int = 256
                ) -> torch.Tensor:
    """``g(r)``, the radial component of the optimal field at ``(r, 0)``, for each radius.

    Given the time ``t``, the ring's point ``m`` (radius and angle) and ``x_t = x``, the data
    noise and the path noise are jointly Gaussian: with ``d = x - t m`` and
    ``s² = t² σ² + (1 - t)²``, ``E[x1 - x0 | ...] = m + (t σ² - (1 - t)) d / s²``, and the
    posterior weight of ``(t, m)`` is ``N(d; 0, s² I)``.
    """
    t = ((torch.arange(n_times, dtype=torch.float64) + 0.5) / n_times)[:, None, None]
    theta = (torch.arange(n_angles, dtype=torch.float64) + 0.5) / n_angles * 2 * math.pi
    radii = torch.tensor(RADII, dtype=torch.float64)[:, None]
    mx, my = radii * theta.cos(), radii * theta.sin()  # (rings, angles)
    s2 = t**2 * NOISE**2 + (1 - t) ** 2
    coef = (t * NOISE**2 - (1 - t)) / s2
    c = scale(t, ct)
    out = []
    for r in radius.tolist():
        dx, dy = r - t * mx, -t * my
        log_w = -(dx**2 + dy**2) / (2 * s2) - torch.log(s2)
        w = torch.softmax(log_w.flatten(), 0).view_as(log_w)
        out.append(float((w * c * (mx + coef * dx)).sum()))
    return torch.tensor(out, dtype=torch.float64)


def descend(grid: torch.Tensor, g: torch.Tensor, span: float, n: int = 200_000,
            steps_per_unit: int = 2000, seed: int = 0) -> list[float]:
    """Integrate ``dr/ds = g(r)`` for ``s`` in ``[0, span]`` from the radii of ``n`` draws of
    ``N(0, I)`` (Euler, ``g`` interpolated on ``grid``); return the share nearest each ring."""
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = torch.sqrt(-2 * torch.log(u))
    width = float(grid[1] - grid[0])
    steps = max(1, int(span * steps_per_unit))
    for _ in range(steps):
        i = torch.clamp(((r - grid[0]) / width).long(), 0, len(grid) - 2)
        frac = (r - grid[i]) / width
        r = (r + span / steps * (g[i] * (1 - frac) + g[i + 1] * frac)).clamp(0, float(grid[-1]))
    nearest = (r[:, None] - torch.tensor(RADII, dtype=torch.float64)).abs().argmin(1)
    return [float((nearest == k).double().mean()) for k in range(len(RADII))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", default="truncated", choices=("truncated", "constant"))
    parser.add_argument("--spans", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = torch.linspace(0.0, 4.5, 226, dtype=torch.float64)
    g = exact_field(grid, args.ct)
    print("g(r) at the rings and beyond:")
    for r in (0.75, 1.5, 2.25, 3.0, 3.5, 4.0):
        print(f"  r = {r:4.2f}: {float(g[int(round(r / 0.02))]):+.3f}")
    crossings = [round(float(grid[i]), 2) for i in range(len(g) - 1) if g[i] > 0 >= g[i + 1]]
    print(f"stable zeros (outward-to-inward crossings): {crossings}")
    print("| span | ring 0.75 | ring 1.5 | ring 2.25 | ring 3 |")
    print("|---:|---:|---:|---:|---:|")
    for span in args.spans:
        shares = descend(grid, g, span)
        print(f"| {span:g} | " + " | ".join(f"{100 * s:.1f} %" for s in shares) + " |")


if __name__ == "__main__":
    main()
