"""Pictures of energies, samples, training and chains (matplotlib, the ``plot`` extra).

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``;
save it with ``fig.savefig(path)``. Figures are built with the object-oriented API on the
non-interactive Agg canvas, so they work headless and never touch pyplot's global state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _new_figure(ncols: int = 1, nrows: int = 1, size: float = 4.0) -> tuple[Figure, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ebmcore.plot needs matplotlib; install it with: pip install 'ebmcore[plot]'"
        ) from exc
    fig = Figure(figsize=(size * ncols, size * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _as_2d_points(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of 2-D points (N, 2), got {got}")
    return x.detach().to("cpu", torch.float64)


def grid(bounds: Sequence[float], resolution: int) -> tuple[torch.Tensor, torch.Tensor,
                                                            torch.Tensor]:
    """Return ``(xs, ys, points)``: a square grid over ``bounds = (low, high)`` as (N, 2) points."""
    low, high = float(bounds[0]), float(bounds[1])
    if not high > low:
        raise ValueError(f"bounds must be (low, high) with low < high, got {tuple(bounds)}")
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    axis = torch.linspace(low, high, resolution, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return xs, ys, torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


@torch.no_grad()
def _density_on_grid(energy: Any, bounds: Sequence[float], resolution: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, points = grid(bounds, resolution)
    param = next(iter(energy.parameters()), None) if hasattr(energy, "parameters") else None
    buffer = next(iter(energy.buffers()), None) if hasattr(energy, "buffers") else None
    ref = param if param is not None else buffer
    dtype = ref.dtype if ref is not None else torch.float64
    device = ref.device if ref is not None else torch.device("cpu")
    e = torch.cat([energy(chunk.to(device, dtype)).double().cpu()
                   for chunk in points.split(65536)])
    log_density = -e - torch.logsumexp(-e, 0)
    return xs, ys, log_density.exp().reshape(xs.shape)


def energy_contours(energy: Any, data: torch.Tensor | None = None, *,
                    bounds: Sequence[float] = (-4.0, 4.0), resolution: int = 200,
                    title: str = "learned density") -> Figure:
    """Draw the normalised density ``exp(-E)`` of a 2-D energy beside the data.

    Args:
        energy: A 2-D energy (any module mapping (N, 2) to (N,)).
        data: Data points (N, 2) shown in a second panel, when given.
        bounds: ``(low, high)`` of the square shown.
        resolution: Grid points per axis.
        title: Title of the density panel.
    """
    ncols = 1 if data is None else 2
    fig, axes = _new_figure(ncols)
    xs, ys, density = _density_on_grid(energy, bounds, resolution)
    ax = axes[0][0]
    ax.contourf(xs.numpy(), ys.numpy(), density.numpy(), levels=30, cmap="viridis")
    ax.set_title(title)
    ax.set_aspect("equal")
    if data is not None:
        points = _as_2d_points("data", data)
        ax = axes[0][1]
        ax.hist2d(points[:, 0].numpy(), points[:, 1].numpy(), bins=100,
                  range=[list(bounds), list(bounds)], cmap="viridis")
        ax.set_title("data")
        ax.set_aspect("equal")
    return fig


def sample_scatter(samples: torch.Tensor, energy: Any | None = None, *,
                   bounds: Sequence[float] = (-4.0, 4.0), resolution: int = 150,
                   max_points: int = 5000, title: str = "samples") -> Figure:
    """Scatter 2-D samples, over the energy's density contours when an energy is given.

    Args:
        samples: Points (N, 2).
        energy: A 2-D energy whose density is drawn underneath.
        bounds: ``(low, high)`` of the square shown.
        resolution: Grid points per axis for the contours.
        max_points: Draw at most this many points (the first ones).
        title: Figure title.
    """
    points = _as_2d_points("samples", samples)[:max_points]
    fig, axes = _new_figure()
    ax = axes[0][0]
    if energy is not None:
        xs, ys, density = _density_on_grid(energy, bounds, resolution)
        ax.contour(xs.numpy(), ys.numpy(), density.numpy(), levels=10, cmap="Greys")
    ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=2, alpha=0.5, color="tab:orange")
    ax.set_xlim(*bounds)
    ax.set_ylim(*bounds)
    ax.set_aspect("equal")
    ax.set_title(title)
    return fig


def training_curves(history: Mapping[str, Sequence[float]], *, x_key: str = "step") -> Figure:
    """Plot each logged metric against the step, one panel per metric.

    Args:
        history: Metric name to values; ``history[x_key]`` gives the x axis when present.
        x_key: The entry holding step numbers.
    """
    metrics = [k for k in history if k != x_key and len(history[k]) > 0]
    if not metrics:
        raise ValueError("history holds no metric to plot")
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = _new_figure(ncols, nrows, size=3.5)
    for i, key in enumerate(metrics):
        ax = axes[i // ncols][i % ncols]
        values = [float(v) for v in history[key]]
        steps = history.get(x_key, range(len(values)))
        ax.plot(list(steps)[: len(values)], values, lw=1)
        ax.set_title(key)
        ax.set_xlabel(x_key)
    for j in range(len(metrics), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    return fig


def _chains(trajectory: torch.Tensor, dim: int, max_chains: int) -> torch.Tensor:
    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim < 3:
        raise ValueError("trajectory must be a tensor (T, B, *event_shape)")
    flat = trajectory.detach().to("cpu", torch.float64).flatten(2)
    if not 0 <= dim < flat.shape[2]:
        raise ValueError(f"dim must be in [0, {flat.shape[2]}), got {dim}")
    return flat[:, :max_chains, dim]


def trace_plot(trajectory: torch.Tensor, *, dim: int = 0, max_chains: int = 8) -> Figure:
    """Draw the path of a few chains in one coordinate.

    Args:
        trajectory: Kept positions (T, B, *event_shape), as ``SampleResult.trajectory``.
        dim: The flattened coordinate to draw.
        max_chains: Draw at most this many chains.
    """
    chains = _chains(trajectory, dim, max_chains)
    fig, axes = _new_figure(size=4.0)
    ax = axes[0][0]
    ax.plot(chains.numpy(), lw=0.8)
    ax.set_xlabel("kept step")
    ax.set_ylabel(f"x[{dim}]")
    ax.set_title("trace")
    return fig


def rank_plot(trajectory: torch.Tensor, *, dim: int = 0, max_chains: int = 4,
              bins: int = 20) -> Figure:
    """Histogram each chain's ranks among all draws; uniform bars mean the chains agree.

    Args:
        trajectory: Kept positions (T, B, *event_shape).
        dim: The flattened coordinate.
        max_chains: Draw at most this many chains.
        bins: Histogram bins.
    """
    chains = _chains(trajectory, dim, max_chains)
    ranks = chains.reshape(-1).argsort().argsort().reshape(chains.shape)
    fig, axes = _new_figure(chains.shape[1], size=2.5)
    for c in range(chains.shape[1]):
        ax = axes[0][c]
        ax.hist(ranks[:, c].numpy(), bins=bins, range=(0, ranks.numel()), color="tab:blue")
        ax.set_title(f"chain {c}")
        ax.set_yticks([])
    return fig


def autocorrelation_plot(trajectory: torch.Tensor, *, dim: int = 0, max_chains: int = 4,
                         max_lag: int = 100) -> Figure:
    """Draw each chain's autocorrelation in one coordinate up to ``max_lag``.

    Args:
        trajectory: Kept positions (T, B, *event_shape).
        dim: The flattened coordinate.
        max_chains: Draw at most this many chains.
        max_lag: Largest lag shown.
    """
    chains = _chains(trajectory, dim, max_chains)
    centred = chains - chains.mean(0)
    n = centred.shape[0]
    spectrum = torch.fft.rfft(centred, n=2 * n, dim=0)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * n, dim=0)[:n]
    acf = acov / acov[:1].clamp_min(1e-300)
    lags = min(max_lag, n - 1)
    fig, axes = _new_figure(size=4.0)
    ax = axes[0][0]
    ax.plot(range(lags + 1), acf[: lags + 1].numpy(), lw=1)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("lag")
    ax.set_title("autocorrelation")
    return fig


def _image_batch(name: str, images: Any, lead: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a tensor ({lead}, C, H, W) with C 1 or 3, got {got}")
    return images.detach().to("cpu", torch.float64)


def _check_value_range(value_range: Any) -> tuple[float, float] | None:
    if value_range is None:
        return None
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high) numbers, got {value_range!r}"
                         ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"value_range must be finite (low, high) with low < high, got "
                         f"{tuple(value_range)}")
    return low, high


def _to_unit(batch: torch.Tensor, value_range: tuple[float, float] | None) -> torch.Tensor:
    """Map a batch (B, C, H, W) to [0, 1] for display: per image min-max without a range,
    else clip to the range and map it to black..white (the data's own scale)."""
    if value_range is not None:
        low, high = value_range
        return (batch.clamp(low, high) - low) / (high - low)
    low = batch.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = batch.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (batch - low) / (high - low).clamp_min(1e-12)


def _show(ax: Any, image: torch.Tensor) -> None:
    img = image.permute(1, 2, 0).numpy()
    # vmin/vmax pin the grey scale; otherwise imshow would rescale each picture again.
    ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0.0, vmax=1.0)


def image_grid(images: torch.Tensor, *, ncols: int = 8, max_images: int = 64,
               value_range: tuple[float, float] | None = None) -> Figure:
    """Tile image samples (B, C, H, W) with C in {1, 3} into one figure.

    Args:
        images: Image batch.
        ncols: Images per row.
        max_images: Draw at most this many.
        value_range: ``(low, high)`` shown as black..white, values outside clipped, so
            samples are seen on the data's own scale; ``None`` min-max scales each image.
    """
    batch = _image_batch("images", images, "B")[:max_images]
    batch = _to_unit(batch, _check_value_range(value_range))
    ncols = min(ncols, batch.shape[0])
    nrows = math.ceil(batch.shape[0] / ncols)
    fig, axes = _new_figure(ncols, nrows, size=1.2)
    for i in range(nrows * ncols):
        ax = axes[i // ncols][i % ncols]
        ax.axis("off")
        if i < batch.shape[0]:
            _show(ax, batch[i])
    return fig


def chain_strip(frames: torch.Tensor, *, value_range: tuple[float, float] | None = None,
                max_frames: int = 12) -> Figure:
    """Draw one image chain over time, left to right, each frame titled by its index.

    Args:
        frames: The chain's states (T, C, H, W) with C in {1, 3}, e.g. one chain of a
            ``SampleResult.trajectory``.
        value_range: ``(low, high)`` shown as black..white, values outside clipped;
            ``None`` min-max scales each frame.
        max_frames: Draw at most this many frames, evenly spaced from the first to the last
            when there are more.
    """
    batch = _image_batch("frames", frames, "T")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    if batch.shape[0] < 1:
        raise ValueError("frames must hold at least one frame")
    total = batch.shape[0]
    if total > max_frames:
        picks = torch.linspace(0, total - 1, max_frames, dtype=torch.float64).round().long()
    else:
        picks = torch.arange(total)
    batch = _to_unit(batch[picks], _check_value_range(value_range))
    fig, axes = _new_figure(len(picks), 1, size=1.2)
    for i, t in enumerate(picks.tolist()):
        ax = axes[0][i]
        ax.axis("off")
        ax.set_title(str(t), fontsize=8)
        _show(ax, batch[i])
    return fig
