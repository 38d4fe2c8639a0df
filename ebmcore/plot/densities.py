"""Pictures of 2-D energies and samples: the normalised density on a grid, beside the data
or under the samples, on a box given as ``(low, high)`` for both axes or one pair per axis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ebmcore.plot._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _as_2d_points(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of 2-D points (N, 2), got {got}")
    return x.detach().to("cpu", torch.float64)


def _box(bounds: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """``bounds`` as ``((x_low, x_high), (y_low, y_high))``: a ``(low, high)`` pair shared by
    both axes, or one pair per axis (an evaluation box, :mod:`ebmcore.evaluation.box`)."""
    from ebmcore.evaluation.box import check_box

    x, y = check_box(bounds, dim=2)
    return x, y


def grid(bounds: Any, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(xs, ys, points)``: a grid over ``bounds`` (``(low, high)`` for both axes, or
    one pair per axis) as (N, 2) points."""
    (x_low, x_high), (y_low, y_high) = _box(bounds)
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    x_axis = torch.linspace(x_low, x_high, resolution, dtype=torch.float64)
    y_axis = torch.linspace(y_low, y_high, resolution, dtype=torch.float64)
    ys, xs = torch.meshgrid(y_axis, x_axis, indexing="ij")
    return xs, ys, torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


@torch.no_grad()
def _density_on_grid(energy: Any, bounds: Any, resolution: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, points = grid(bounds, resolution)
    # a module's parameters (else buffers) say where and in which dtype it computes
    ref = None
    if isinstance(energy, torch.nn.Module):
        ref = next(iter(energy.parameters()), None)
        ref = next(iter(energy.buffers()), None) if ref is None else ref
    dtype = ref.dtype if ref is not None else torch.float64
    device = ref.device if ref is not None else torch.device("cpu")
    e = torch.cat([energy(chunk.to(device, dtype)).double().cpu()
                   for chunk in points.split(65536)])
    log_density = -e - torch.logsumexp(-e, 0)
    return xs, ys, log_density.exp().reshape(xs.shape)


def energy_contours(energy: Any, data: torch.Tensor | None = None, *,
                    bounds: Any = (-4.0, 4.0), resolution: int = 200,
                    title: str = "learned density") -> Figure:
    """Draw the normalised density ``exp(-E)`` of a 2-D energy beside the data.

    Args:
        energy: A 2-D energy (any module mapping (N, 2) to (N,)).
        data: Data points (N, 2) shown in a second panel, when given.
        bounds: ``(low, high)`` of both axes shown, or one pair per axis.
        resolution: Grid points per axis.
        title: Title of the density panel.
    """
    ncols = 1 if data is None else 2
    fig, axes = new_figure(ncols)
    xs, ys, density = _density_on_grid(energy, bounds, resolution)
    ax = axes[0][0]
    ax.contourf(xs.numpy(), ys.numpy(), density.numpy(), levels=30, cmap="viridis")
    ax.set_title(title)
    ax.set_aspect("equal")
    if data is not None:
        points = _as_2d_points("data", data)
        ax = axes[0][1]
        ax.hist2d(points[:, 0].numpy(), points[:, 1].numpy(), bins=100,
                  range=[list(axis) for axis in _box(bounds)], cmap="viridis")
        ax.set_title("data")
        ax.set_aspect("equal")
    return fig


def sample_scatter(samples: torch.Tensor, energy: Any | None = None, *,
                   bounds: Any = (-4.0, 4.0), resolution: int = 150,
                   max_points: int = 5000, title: str = "samples") -> Figure:
    """Scatter 2-D samples, over the energy's density contours when an energy is given.

    Args:
        samples: Points (N, 2).
        energy: A 2-D energy whose density is drawn underneath.
        bounds: ``(low, high)`` of both axes shown, or one pair per axis.
        resolution: Grid points per axis for the contours.
        max_points: Draw at most this many points (the first ones).
        title: Figure title.
    """
    points = _as_2d_points("samples", samples)[:max_points]
    fig, axes = new_figure()
    ax = axes[0][0]
    if energy is not None:
        xs, ys, density = _density_on_grid(energy, bounds, resolution)
        ax.contour(xs.numpy(), ys.numpy(), density.numpy(), levels=10, cmap="Greys")
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=2, alpha=0.5, color="tab:orange")
    x_range, y_range = _box(bounds)
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.set_aspect("equal")
    ax.set_title(title)
    return fig
