"""Metrics of samples alone, whatever produced them: one scale for every model.

- :func:`histogram_tv` (2-D data sets with a known density): the total variation between a
  histogram of model samples on a grid and the data's exact cell probabilities, beside the
  floor that as many exact data samples reach (a histogram of finitely many samples is never
  exactly the density); :func:`streamed_histogram_tv` does the same for a million samples
  or more, drawn in batches, in bounded memory.
- :func:`image_frechet` (image data sets): the Fréchet distance between Gaussians fitted to
  features of the model's samples and of the training images, in the hidden layer of the
  classifier the image report trains
  (:class:`ebmcore.evaluation.images.ImageClassifier`), beside the held-out split's own
  distance to the training split.
- :func:`frechet_distance` and :func:`gaussian_frechet_distance`: the distance itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ebmcore.dataset import Dataset
from ebmcore.evaluation._model import eval_mode, placement
from ebmcore.evaluation.box import check_box, evaluation_box
from ebmcore.evaluation.grid import make_grid
from ebmcore.evaluation.images import ImageClassifier
from ebmcore.validation import check_int, check_points

__all__ = ["FrechetDistance", "HistogramTV", "classifier_features", "frechet_distance",
           "gaussian_frechet_distance", "histogram_tv", "image_frechet",
           "streamed_histogram_tv"]

# Images pushed through the classifier at once; keeps memory flat for big sample sets.
_FEATURE_CHUNK = 4096


@dataclass
class HistogramTV:
    """What :func:`histogram_tv` reports.

    Attributes:
        tv: Total variation between the samples' histogram and the exact cell probabilities,
            the mass outside the box (and non-finite samples) counted as one more cell.
        floor: The same figure for as many exact samples from the data set.
        ratio: ``tv / floor`` (1 is as good as a finite sample can be).
        n_samples: Model samples (non-finite ones included).
        n_nonfinite: Model samples with a non-finite coordinate; they count as outside.
        outside: Share of the model samples outside the box (non-finite ones included).
        data_outside: The data density's mass outside the box.
        resolution: Cells per axis.
        bounds: ``((x_low, x_high), (y_low, y_high))``.
    """

    tv: float
    floor: float
    ratio: float
    n_samples: int
    n_nonfinite: int
    outside: float
    data_outside: float
    resolution: int
    bounds: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a plain dict."""
        return asdict(self)


def _cell_probabilities(dataset: Dataset, bounds: tuple[tuple[float, float], ...],
                        resolution: int, subdivisions: int) -> torch.Tensor:
    """The data's mass in each cell ``(resolution**2,)``, in :func:`make_grid`'s order, by
    the midpoint rule on ``subdivisions**2`` sub-cells per cell."""
    fine = resolution * subdivisions
    points, area = make_grid(bounds, fine)
    density = torch.cat([dataset.log_prob(part).to(torch.float64).exp()
                         for part in points.split(1 << 18)])
    return (density * area).reshape(resolution, subdivisions, resolution,
                                    subdivisions).sum((1, 3)).reshape(-1)


def _cell_counts(samples: torch.Tensor, bounds: tuple[tuple[float, float], ...],
                 resolution: int) -> tuple[torch.Tensor, int]:
    """Return the samples' counts per cell ``(resolution**2,)`` (float64, in
    :func:`make_grid`'s order) and how many of them have a non-finite coordinate."""
    x = samples.detach().to("cpu", torch.float64)
    finite = torch.isfinite(x).all(1)
    (x0, x1), (y0, y1) = bounds
    low = torch.tensor([x0, y0], dtype=torch.float64)
    width = torch.tensor([x1 - x0, y1 - y0], dtype=torch.float64) / resolution
    index = torch.floor((x[finite] - low) / width).long()
    inside = ((index >= 0) & (index < resolution)).all(1)
    flat = index[inside, 0] * resolution + index[inside, 1]  # make_grid's "ij" order
    counts = torch.bincount(flat, minlength=resolution * resolution).double()
    return counts, int(x.shape[0] - int(finite.sum()))


def _tv_of_counts(counts: torch.Tensor, n: int, cells: torch.Tensor) -> tuple[float, float]:
    """Return (TV, share outside) of ``n`` samples with ``counts`` per cell against the
    cells' exact probabilities; the mass outside the box is one more cell."""
    shares = counts / n
    outside = 1.0 - float(shares.sum())
    data_outside = max(0.0, 1.0 - float(cells.sum()))
    tv = 0.5 * (float((shares - cells).abs().sum()) + abs(outside - data_outside))
    return tv, outside


def _tv_of(samples: torch.Tensor, cells: torch.Tensor,
           bounds: tuple[tuple[float, float], ...], resolution: int) -> tuple[float, float, int]:
    """Return (TV, share outside, non-finite count) of ``samples`` against ``cells``."""
    counts, nonfinite = _cell_counts(samples, bounds, resolution)
    tv, outside = _tv_of_counts(counts, samples.shape[0], cells)
    return tv, outside, nonfinite


def _check_tv_inputs(dataset: Any, resolution: Any, subdivisions: Any) -> None:
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be an ebmcore.Dataset, got {type(dataset).__name__}")
    if tuple(dataset.event_shape) != (2,) or not dataset.has_log_prob:
        raise ValueError(f"histogram_tv needs a 2-D data set with a closed-form log_prob; "
                         f"{type(dataset).__name__} has event shape "
                         f"{tuple(dataset.event_shape)} and "
                         f"{'a' if dataset.has_log_prob else 'no'} log_prob")
    check_int("resolution", resolution, minimum=2)
    check_int("subdivisions", subdivisions, minimum=1)


def histogram_tv(samples: torch.Tensor, dataset: Dataset, *, bounds: Any = None,
                 resolution: int = 100, subdivisions: int = 4,
                 generator: torch.Generator | None = None) -> HistogramTV:
    """Total variation between a histogram of 2-D samples and the data's exact density.

    The box (``bounds``, else the data set's ``evaluation_box``, else the core's rule from
    the data samples) is cut into ``resolution**2`` cells; each cell's exact probability is
    the midpoint rule on ``subdivisions**2`` sub-cells. The floor draws as many samples from
    the data set (with ``generator``) and scores them the same way: a model whose ``tv`` is
    near ``floor`` is indistinguishable from the data at that resolution and sample size.
    For a million samples or more, drawn in batches, see :func:`streamed_histogram_tv`.

    Args:
        samples: Model samples ``(N, 2)``; non-finite rows count as mass outside the box.
        dataset: A 2-D data set with a closed-form ``log_prob``.
        bounds: The box, ``(low, high)`` for both axes or one pair per axis.
        resolution: Cells per axis.
        subdivisions: Sub-cells per axis of each cell for the exact probabilities.
        generator: Draws the floor's data samples; ``None`` uses a private generator seeded 0.

    Raises:
        ValueError: For samples that are not ``(N, 2)``, or a data set that is not 2-D or
            has no ``log_prob``.
    """
    _check_tv_inputs(dataset, resolution, subdivisions)
    check_points("samples", samples, (2,), finite=False)
    n = samples.shape[0]
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    data = dataset.sample(n, generator).to(torch.float64)
    box = check_box(evaluation_box(dataset, data, bounds), dim=2)
    cells = _cell_probabilities(dataset, box, resolution, subdivisions)
    tv, outside, nonfinite = _tv_of(samples, cells, box, resolution)
    floor, _, _ = _tv_of(data, cells, box, resolution)
    return HistogramTV(tv=tv, floor=floor, ratio=tv / floor if floor > 0 else math.inf,
                       n_samples=n, n_nonfinite=nonfinite, outside=outside,
                       data_outside=max(0.0, 1.0 - float(cells.sum())),
                       resolution=resolution, bounds=box)


def _streamed_counts(draw: Callable[[int], torch.Tensor], n: int, chunk: int,
                     box: tuple[tuple[float, float], ...], resolution: int,
                     label: str) -> tuple[torch.Tensor, int]:
    """Counts per cell and non-finite count of ``n`` points drawn ``chunk`` at a time."""
    counts = torch.zeros(resolution * resolution, dtype=torch.float64)
    nonfinite, done = 0, 0
    while done < n:
        k = min(chunk, n - done)
        points = draw(k)
        if not isinstance(points, torch.Tensor) or tuple(points.shape) != (k, 2):
            got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points)
            raise ValueError(f"{label} must return a tensor of shape ({k}, 2) when asked "
                             f"for {k} points, got {got}")
        part, bad = _cell_counts(points, box, resolution)
        counts += part
        nonfinite += bad
        done += k
    return counts, nonfinite


def streamed_histogram_tv(draw: Callable[[int], torch.Tensor], dataset: Dataset, *,
                          n: int = 1_000_000, chunk: int = 65_536, bounds: Any = None,
                          resolution: int = 100, subdivisions: int = 4,
                          generator: torch.Generator | None = None) -> HistogramTV:
    """:func:`histogram_tv` of ``n`` samples (a million by default) drawn in batches.

    ``draw(k)`` returns ``k`` model samples ``(k, 2)``; only the per-cell counts are kept,
    so memory stays at one batch and one histogram whatever ``n`` is. The floor is the same
    figure for ``n`` exact data samples, drawn in batches of ``chunk`` from ``generator``
    (seeded 0 when ``None``). The box is ``bounds``, else the data set's
    ``evaluation_box``, else the core's rule from the first batch of data samples.

    Args:
        draw: Returns ``k`` model samples ``(k, 2)``; non-finite rows count as outside.
        dataset: A 2-D data set with a closed-form ``log_prob``.
        n: How many model samples (and data samples for the floor).
        chunk: Points per batch.
        bounds: The box, ``(low, high)`` for both axes or one pair per axis.
        resolution: Cells per axis.
        subdivisions: Sub-cells per axis of each cell for the exact probabilities.
        generator: Draws the floor's data samples.

    Raises:
        ValueError: For a data set that is not 2-D or has no ``log_prob``, or a ``draw``
            that returns the wrong shape.
    """
    _check_tv_inputs(dataset, resolution, subdivisions)
    if not callable(draw):
        raise TypeError(f"draw must be a callable draw(k) -> (k, 2) samples, got "
                        f"{type(draw).__name__}")
    check_int("n", n, minimum=1)
    check_int("chunk", chunk, minimum=1)
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    def data_draw(k: int) -> torch.Tensor:
        return dataset.sample(k, generator).to(torch.float64)

    first = data_draw(min(chunk, n))
    box = check_box(evaluation_box(dataset, first, bounds), dim=2)
    cells = _cell_probabilities(dataset, box, resolution, subdivisions)
    data_counts, _ = _cell_counts(first, box, resolution)
    if n > first.shape[0]:
        more, _ = _streamed_counts(data_draw, n - first.shape[0], chunk, box, resolution,
                                   "the data set's sample")
        data_counts += more
    floor, _ = _tv_of_counts(data_counts, n, cells)
    counts, nonfinite = _streamed_counts(draw, n, chunk, box, resolution, "draw")
    tv, outside = _tv_of_counts(counts, n, cells)
    return HistogramTV(tv=tv, floor=floor, ratio=tv / floor if floor > 0 else math.inf,
                       n_samples=n, n_nonfinite=nonfinite, outside=outside,
                       data_outside=max(0.0, 1.0 - float(cells.sum())),
                       resolution=resolution, bounds=box)


def gaussian_frechet_distance(mean_a: torch.Tensor, cov_a: torch.Tensor,
                              mean_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """The squared Fréchet (2-Wasserstein) distance between two Gaussians,
    ``|mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a^1/2 cov_b cov_a^1/2)^1/2)``.

    Computed in float64 through symmetric eigendecompositions (tiny negative eigenvalues of
    rank-deficient covariances clipped to 0), so it is never negative and is 0 for
    identical Gaussians.

    Args:
        mean_a: Mean ``(F,)``.
        cov_a: Covariance ``(F, F)``, symmetric positive semi-definite.
        mean_b: Mean ``(F,)``.
        cov_b: Covariance ``(F, F)``.
    """
    tensors = {"mean_a": mean_a, "cov_a": cov_a, "mean_b": mean_b, "cov_b": cov_b}
    for label, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{label} must be a torch.Tensor, got {type(value).__name__}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{label} contains non-finite values")
    f = mean_a.shape[0] if mean_a.ndim == 1 else -1
    if f < 1 or mean_b.shape != (f,) or cov_a.shape != (f, f) or cov_b.shape != (f, f):
        raise ValueError(f"means must be (F,) and covariances (F, F) of one F, got "
                         f"{[tuple(v.shape) for v in tensors.values()]}")
    mean_a, cov_a, mean_b, cov_b = (v.detach().to("cpu", torch.float64)
                                    for v in tensors.values())
    w, v = torch.linalg.eigh(0.5 * (cov_a + cov_a.T))
    root_a = (v * w.clamp_min(0.0).sqrt()) @ v.T
    middle = root_a @ (0.5 * (cov_b + cov_b.T)) @ root_a
    cross = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0.0).sqrt().sum()
    value = (mean_a - mean_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return max(0.0, float(value))


def _moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = features.detach().to("cpu", torch.float64)
    centred = x - x.mean(0)
    return x.mean(0), centred.T @ centred / (x.shape[0] - 1)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features (the FID
    formula): means and unbiased covariances, then :func:`gaussian_frechet_distance`.

    Args:
        a: Features ``(N, F)``, finite, ``N >= 2``.
        b: Features ``(M, F)``, finite, ``M >= 2``.
    """
    for label, x in (("a", a), ("b", b)):
        check_points(label, x)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"{label} must be features (N, F) with N >= 2, got shape "
                             f"{tuple(x.shape)}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of features, got {a.shape[1]} "
                         f"and {b.shape[1]}")
    return gaussian_frechet_distance(*_moments(a), *_moments(b))


@torch.no_grad()
def classifier_features(classifier: ImageClassifier, images: torch.Tensor) -> torch.Tensor:
    """The hidden-layer features ``(N, hidden)`` of ``images`` under ``classifier``
    (:meth:`ImageClassifier.features`), in eval mode and in chunks, float64 on the CPU.

    Args:
        classifier: A classifier from :func:`ebmcore.evaluation.images.train_classifier`.
        images: Images ``(N, *event_shape)``, finite.
    """
    if not isinstance(classifier, ImageClassifier):
        raise TypeError(f"classifier must be an ebmcore.evaluation.images.ImageClassifier "
                        f"(from train_classifier), got {type(classifier).__name__}")
    check_points("images", images, classifier.event_shape)
    dtype, device = placement(classifier)
    with eval_mode(classifier):
        return torch.cat([classifier.features(chunk.to(device, dtype)).to("cpu", torch.float64)
                          for chunk in images.detach().split(_FEATURE_CHUNK)])


@dataclass
class FrechetDistance:
    """What :func:`image_frechet` reports.

    Attributes:
        distance: Fréchet distance of the model's samples to the training images.
        reference: Fréchet distance of the held-out images to the training images.
        ratio: ``distance / reference`` (1 is as close as real unseen images come).
        n_samples: Model samples the distance used (finite ones, at most ``n_reference``
            when sizes are matched).
        n_reference: Held-out images the reference used.
        n_train: Training images.
        n_nonfinite: Model samples left out for a non-finite value.
        features: Dimensions of the feature space.
    """

    distance: float
    reference: float
    ratio: float
    n_samples: int
    n_reference: int
    n_train: int
    n_nonfinite: int
    features: int

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a plain dict."""
        return asdict(self)


def image_frechet(classifier: ImageClassifier, samples: torch.Tensor, train: torch.Tensor,
                  held_out: torch.Tensor, *, match_sizes: bool = True) -> FrechetDistance:
    """The Fréchet distance of model samples to the training images, with the held-out
    images' own distance as the reference, in the classifier's hidden-layer features.

    A Fréchet distance from finitely many samples is biased upwards, the more so the fewer
    there are; with ``match_sizes`` (the default) the model's distance uses as many samples
    as the held-out split has images (the first ones: samples are independent), so the two
    figures carry the same bias and ``ratio`` compares like with like.

    Args:
        classifier: The classifier trained on ``train``
            (:func:`ebmcore.evaluation.images.train_classifier`).
        samples: Model samples ``(N, *event_shape)``; rows with a non-finite value are left
            out and counted.
        train: The training images ``(M, *event_shape)``.
        held_out: The held-out images ``(K, *event_shape)``.
        match_sizes: Use at most ``K`` samples, as many as the reference has.

    Raises:
        ValueError: When fewer than two samples are finite, or shapes disagree.
    """
    check_points("samples", samples, finite=False)
    finite = samples[torch.isfinite(samples.detach()).flatten(1).all(1)]
    nonfinite = samples.shape[0] - finite.shape[0]
    if finite.shape[0] < 2:
        raise ValueError(f"samples must hold at least 2 finite images, got {finite.shape[0]} "
                         f"of {samples.shape[0]}")
    check_points("held_out", held_out)
    if match_sizes:
        finite = finite[:held_out.shape[0]]
    train_features = classifier_features(classifier, train)
    reference = frechet_distance(classifier_features(classifier, held_out), train_features)
    distance = frechet_distance(classifier_features(classifier, finite), train_features)
    return FrechetDistance(distance=distance, reference=reference,
                           ratio=distance / reference if reference > 0 else math.inf,
                           n_samples=int(finite.shape[0]), n_reference=int(held_out.shape[0]),
                           n_train=int(train.shape[0]), n_nonfinite=int(nonfinite),
                           features=int(train_features.shape[1]))
