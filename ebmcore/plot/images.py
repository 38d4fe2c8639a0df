"""Pictures of images: a grid of samples, and one chain's frames over time, shown on the
data's own scale when a value range is given."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ebmcore.plot._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    fig, axes = new_figure(ncols, nrows, size=1.2)
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
    fig, axes = new_figure(len(picks), 1, size=1.2)
    for i, t in enumerate(picks.tolist()):
        ax = axes[0][i]
        ax.axis("off")
        ax.set_title(str(t), fontsize=8)
        _show(ax, batch[i])
    return fig
