"""Conformance checks for data sets: shapes, seeding, ``log_prob`` against quadrature and samples.

Plugin authors call :func:`check_dataset` from their own tests::

    from ebmcore.testing import check_dataset

    def test_my_dataset():
        check_dataset(MyDataset())

Every failure raises an ``AssertionError`` that says which property broke and by how much.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ebmcore.dataset import Dataset

#: Points drawn for the histogram and outside-the-box estimates.
N_SAMPLES = 20_000
#: Allowed ``|∫ p - 1|`` over the box plus the sampled mass outside it, beyond Monte Carlo
#: error: a midpoint rule at :data:`GRID_RESOLUTION` points per axis is far more accurate
#: than this for smooth densities, and a density with jumps loses at most about
#: ``perimeter x cell width x height`` at them.
INTEGRAL_TOLERANCE = 0.01
#: Allowed deviations of a sample statistic, in Monte Carlo standard errors.
MCSE_TOLERANCE = 5.0
#: Quadrature points per axis on the evaluation box.
GRID_RESOLUTION = 512
#: Histogram bins per axis on the evaluation box (each holds GRID_RESOLUTION / HISTOGRAM_BINS
#: quadrature cells per axis).
HISTOGRAM_BINS = 16
#: Fraction of samples a declared evaluation box may leave outside it.
BOX_OUTSIDE_MAX = 0.01


class DatasetCheckSkipped(UserWarning):
    """A part of :func:`check_dataset` could not run for this data set (the message says why)."""


def check_dataset(dataset: Dataset, *, n_samples: int = N_SAMPLES, seed: int = 0) -> None:
    """Check that ``dataset`` honours the :class:`ebmcore.Dataset` contract.

    Checks, in order: ``event_shape`` is a tuple of positive ints and ``sample(n, generator)``
    returns finite floating points ``(n, *event_shape)``; the same seed gives the same bits,
    another seed other points, and sampling never touches torch's global generator (with a
    generator or with ``None``); a declared ``evaluation_box`` has one finite ``(low, high)``
    pair per dimension and holds all but :data:`BOX_OUTSIDE_MAX` of the samples. Where
    ``log_prob`` is known: it returns finite ``(B,)`` values in the input's dtype; for one-
    and two-dimensional data ``exp(log_prob)`` integrates to one (a midpoint rule on the
    evaluation box, or on the samples' range widened by 10 % when none is declared, plus the
    sampled fraction outside the box) within :data:`INTEGRAL_TOLERANCE` plus
    :data:`MCSE_TOLERANCE` standard errors of that fraction; and a histogram of the samples
    inside the box, on a :data:`HISTOGRAM_BINS`-per-axis grid, matches the bin probabilities
    (normalised over the box) by a chi-square test whose statistic may exceed its degrees of
    freedom by at most :data:`MCSE_TOLERANCE` of its standard deviations. Above two
    dimensions the quadrature checks are skipped with a :class:`DatasetCheckSkipped` warning.

    Args:
        dataset: The data set to check.
        n_samples: Points drawn for the statistical checks (at least 1,000).
        seed: Seed of the generators used.

    Raises:
        AssertionError: When the data set breaks the contract; the message says how.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be an ebmcore.Dataset, got {type(dataset).__name__}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1000:
        raise ValueError(f"n_samples must be an integer of at least 1000, got {n_samples!r}")
    shape = _check_event_shape(dataset)
    x = _check_samples(dataset, shape, n_samples, seed)
    box = _check_box(dataset, shape, x)
    if not dataset.has_log_prob:
        return
    _check_log_prob_basics(dataset, x)
    dim = math.prod(shape)
    if dim > 2:
        warnings.warn(f"check_dataset({_name(dataset)}): quadrature and histogram checks "
                      f"skipped for D={dim} > 2", DatasetCheckSkipped, stacklevel=2)
        return
    flat = x.reshape(len(x), -1).double()
    if box is None:
        low, high = flat.amin(0), flat.amax(0)
        box = [(float(lo - 0.1 * (hi - lo)), float(hi + 0.1 * (hi - lo)))
               for lo, hi in zip(low, high, strict=True)]
    cells = _cell_masses(dataset, shape, box)
    _check_integral(dataset, cells, flat, box)
    _check_histogram(dataset, cells, flat, box)


# -- helpers ---------------------------------------------------------------------------------

def _name(dataset: Any) -> str:
    return type(dataset).__name__


def _fail(dataset: Any, what: str) -> AssertionError:
    return AssertionError(f"{_name(dataset)}: {what}")


def _check_event_shape(dataset: Dataset) -> tuple[int, ...]:
    shape = dataset.event_shape
    if not isinstance(shape, tuple) or not shape or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise _fail(dataset, f"event_shape must be a non-empty tuple of positive ints, "
                             f"got {shape!r}")
    return shape


def _draw(dataset: Dataset, n: int, seed: int | None) -> torch.Tensor:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return dataset.sample(n, generator)


def _check_samples(dataset: Dataset, shape: tuple[int, ...], n: int,
                   seed: int) -> torch.Tensor:
    global_state = torch.get_rng_state()
    try:
        return _check_draws(dataset, shape, n, seed, global_state)
    finally:
        torch.set_rng_state(global_state)


def _check_draws(dataset: Dataset, shape: tuple[int, ...], n: int, seed: int,
                 global_state: torch.Tensor) -> torch.Tensor:
    x = _draw(dataset, n, seed)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise _fail(dataset, f"sample({n}) returned {got}, expected {(n, *shape)}")
    if not x.is_floating_point():
        raise _fail(dataset, f"sample returned dtype {x.dtype}, expected a floating dtype")
    if not bool(torch.isfinite(x).all()):
        raise _fail(dataset, "sample returned non-finite points")
    again = _draw(dataset, n, seed)
    if not torch.equal(x, again):
        raise _fail(dataset, f"two draws with generators seeded {seed} differ; draw every "
                             f"random number from the generator passed to sample")
    if torch.equal(_draw(dataset, 100, seed), _draw(dataset, 100, seed + 1)):
        raise _fail(dataset, "draws with different seeds are identical: sample ignores its "
                             "generator")
    _draw(dataset, 10, None)
    if not torch.equal(torch.get_rng_state(), global_state):
        raise _fail(dataset, "sample drew from torch's global generator; with generator=None "
                             "use a private generator instead")
    return x


def _check_box(dataset: Dataset, shape: tuple[int, ...],
               x: torch.Tensor) -> list[tuple[float, float]] | None:
    box = dataset.evaluation_box
    if box is None:
        return None
    dim = math.prod(shape)
    try:
        pairs = [(float(low), float(high)) for low, high in box]
    except (TypeError, ValueError):
        raise _fail(dataset, f"evaluation_box must be a tuple of (low, high) pairs, "
                             f"got {box!r}") from None
    if len(pairs) != dim:
        raise _fail(dataset, f"evaluation_box has {len(pairs)} pairs for {dim} dimensions")
    for i, (low, high) in enumerate(pairs):
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise _fail(dataset, f"evaluation_box[{i}] must be finite with low < high, "
                                 f"got {(low, high)}")
    outside = _outside(x.reshape(len(x), -1).double(), pairs).double().mean()
    if float(outside) > BOX_OUTSIDE_MAX:
        raise _fail(dataset, f"{float(outside):.2%} of the samples lie outside the "
                             f"evaluation_box {pairs} (at most {BOX_OUTSIDE_MAX:.0%} may)")
    return pairs


def _outside(flat: torch.Tensor, box: list[tuple[float, float]]) -> torch.Tensor:
    low = torch.tensor([b[0] for b in box], dtype=flat.dtype)
    high = torch.tensor([b[1] for b in box], dtype=flat.dtype)
    return ((flat < low) | (flat > high)).any(1)


def _check_log_prob_basics(dataset: Dataset, x: torch.Tensor) -> None:
    for dtype in (torch.float32, torch.float64):
        points = x[:7].to(dtype)
        lp = dataset.log_prob(points)
        if not isinstance(lp, torch.Tensor) or tuple(lp.shape) != (len(points),):
            got = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
            raise _fail(dataset, f"log_prob on {len(points)} points returned {got}, "
                                 f"expected ({len(points)},)")
        if lp.dtype != dtype:
            raise _fail(dataset, f"log_prob on {dtype} points returned {lp.dtype}")
        if not bool(torch.isfinite(lp).all()):
            raise _fail(dataset, f"log_prob is not finite on the data set's own samples: "
                                 f"{lp.tolist()}")


def _cell_masses(dataset: Dataset, shape: tuple[int, ...],
                 box: list[tuple[float, float]]) -> torch.Tensor:
    """Midpoint-rule probability of each grid cell on the box, shape ``(R,)`` or ``(R, R)``."""
    r = GRID_RESOLUTION
    axes, widths = [], []
    for low, high in box:
        h = (high - low) / r
        axes.append(low + h * (torch.arange(r, dtype=torch.float64) + 0.5))
        widths.append(h)
    mesh = torch.meshgrid(*axes, indexing="ij")
    points = torch.stack([m.reshape(-1) for m in mesh], 1).reshape(-1, *shape)
    lp = torch.cat([dataset.log_prob(chunk) for chunk in points.split(65536)])
    mass = lp.double().exp().nan_to_num(nan=math.inf) * math.prod(widths)
    if not bool(torch.isfinite(mass).all()):
        raise _fail(dataset, "log_prob is NaN or +inf somewhere on the evaluation box")
    return mass.reshape([r] * len(box))


def _check_integral(dataset: Dataset, cells: torch.Tensor, flat: torch.Tensor,
                    box: list[tuple[float, float]]) -> None:
    integral = float(cells.sum())
    outside = float(_outside(flat, box).double().mean())
    se = math.sqrt(max(outside * (1 - outside), 1.0 / len(flat)) / len(flat))
    total = integral + outside
    if abs(total - 1.0) > INTEGRAL_TOLERANCE + MCSE_TOLERANCE * se:
        raise _fail(dataset, f"exp(log_prob) integrates to {integral:.5f} on the box {box} "
                             f"and {outside:.5f} of the samples lie outside it: total "
                             f"{total:.5f}, not 1 (tolerance {INTEGRAL_TOLERANCE} + "
                             f"{MCSE_TOLERANCE} x {se:.2g})")


def _check_histogram(dataset: Dataset, cells: torch.Tensor, flat: torch.Tensor,
                     box: list[tuple[float, float]]) -> None:
    bins, dim = HISTOGRAM_BINS, cells.ndim
    group = GRID_RESOLUTION // bins
    probs = cells.reshape(*[s for _ in range(dim) for s in (bins, group)])
    probs = probs.sum(dim=tuple(range(1, 2 * dim, 2))).reshape(-1)
    inside = ~_outside(flat, box)
    index = torch.zeros(len(flat), dtype=torch.long)
    for axis, (low, high) in enumerate(box):
        b = ((flat[:, axis] - low) / (high - low) * bins).floor().long().clamp(0, bins - 1)
        index = index * bins + b
    counts = torch.bincount(index[inside], minlength=bins**dim).double()
    # The test is of shape, given the box: the integral check has judged normalisation, and
    # the quadrature's own small deficit at jumps must not count as missing samples.
    expected = float(counts.sum()) * probs / probs.sum()
    kept = expected >= 5.0  # the chi-square approximation needs a few expected counts per bin
    obs, exp = counts[kept], expected[kept]
    rest_exp = float(expected[~kept].sum())
    if rest_exp >= 5.0:  # the thinly filled bins, pooled into one
        obs = torch.cat([obs, counts[~kept].sum().reshape(1)])
        exp = torch.cat([exp, torch.tensor([rest_exp], dtype=torch.float64)])
    z = (obs - exp) / exp.sqrt()
    chi2, dof = float(z.pow(2).sum()), max(len(obs) - 1, 1)
    excess = (chi2 - dof) / math.sqrt(2 * dof)
    if excess > MCSE_TOLERANCE:
        worst = int(z.abs().argmax())
        raise _fail(dataset, f"samples do not follow exp(log_prob): chi-square {chi2:.1f} on "
                             f"{dof} degrees of freedom ({excess:.1f} standard deviations "
                             f"above, tolerance {MCSE_TOLERANCE}); worst bin holds "
                             f"{int(obs[worst])} samples where {float(exp[worst]):.1f} were "
                             f"expected")
