"""Pictures of how a run went: the training curves, and the traced chains' paths, ranks and
autocorrelations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from ebmcore.plot._figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    fig, axes = new_figure(ncols, nrows, size=3.5)
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
    fig, axes = new_figure(size=4.0)
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
    fig, axes = new_figure(chains.shape[1], size=2.5)
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
    fig, axes = new_figure(size=4.0)
    ax = axes[0][0]
    ax.plot(range(lags + 1), acf[: lags + 1].numpy(), lw=1)
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_xlabel("lag")
    ax.set_title("autocorrelation")
    return fig
