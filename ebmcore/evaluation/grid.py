"""Exact evaluation of 2-D energies by quadrature on a grid."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.validation import check_energy_output, check_int, check_points


@dataclass
class GridEvaluation:
    """What :func:`grid_evaluation` reports (all in nats).

    Attributes:
        log_z: The model's log normaliser over the box, by the midpoint rule.
        nll: Mean negative log-likelihood of ``test_x`` under the normalised model.
        data_nll: Mean negative log-likelihood of ``test_x`` under the data set's density.
        nll_gap: ``nll - data_nll``; zero for a perfect model, in expectation.
        kl: ``KL(data || model)`` over the box, both densities renormalised to it.
        tv: Total-variation distance over the box, both renormalised to it.
        data_mass: The data density's mass inside the box (should be close to 1).
        resolution: Grid points per axis.
        bounds: ``((x_low, x_high), (y_low, y_high))``.
    """

    log_z: float
    nll: float | None
    data_nll: float | None
    nll_gap: float | None
    kl: float | None
    tv: float | None
    data_mass: float | None
    resolution: int
    bounds: tuple[tuple[float, float], tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a plain dict."""
        return asdict(self)


def _check_bounds(bounds: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    pairs: list[tuple[float, ...]] = []
    try:
        if len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds):
            pairs = [tuple(float(b) for b in bounds)] * 2  # (low, high) for both axes
        else:
            pairs = [tuple(float(v) for v in pair) for pair in bounds]
    except (TypeError, ValueError):
        pairs = []
    if len(pairs) != 2 or any(len(p) != 2 for p in pairs):
        raise ValueError(f"bounds must be (low, high) or ((x_low, x_high), (y_low, y_high)), "
                         f"got {bounds!r}")
    for axis, (low, high) in zip("xy", pairs, strict=True):
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"bounds for {axis} must be finite with low < high, got "
                             f"({low}, {high})")
    return pairs[0], pairs[1]


def _model_dtype(energy: Energy) -> tuple[torch.dtype, torch.device]:
    for tensor in [*energy.parameters(), *energy.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.get_default_dtype(), torch.device("cpu")


def make_grid(bounds: Any, resolution: int, dtype: torch.dtype = torch.float64,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, float]:
    """Return the midpoints ``(resolution**2, 2)`` of a regular grid and the cell area.

    Args:
        bounds: ``(low, high)`` for both axes or ``((x_low, x_high), (y_low, y_high))``.
        resolution: Cells per axis.
        dtype: Floating-point dtype of the points.
        device: Where the points live.
    """
    (x0, x1), (y0, y1) = _check_bounds(bounds)
    check_int("resolution", resolution, minimum=2)
    dx, dy = (x1 - x0) / resolution, (y1 - y0) / resolution
    xs = x0 + dx * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    ys = y0 + dy * (torch.arange(resolution, dtype=torch.float64) + 0.5)
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    return points.to(dtype=dtype, device=device), dx * dy


@torch.no_grad()
def _energies(energy: Energy, points: torch.Tensor, chunk: int) -> torch.Tensor:
    out = []
    for start in range(0, points.shape[0], chunk):
        part = points[start:start + chunk]
        out.append(check_energy_output(energy, part, energy(part)).to(torch.float64))
    return torch.cat(out)


def grid_evaluation(energy: Energy, dataset: Any = None, test_x: torch.Tensor | None = None,
                    bounds: Any = (-4.0, 4.0), resolution: int = 256, *,
                    chunk: int = 65536) -> GridEvaluation:
    """Normalise a 2-D energy on a grid and compare it with the data set's exact density.

    Args:
        energy: A 2-D energy ``E``; the model density is ``exp(-E) / Z`` with ``Z`` by the
            midpoint rule over the box.
        dataset: A data set with ``log_prob`` (instance or registered name), or ``None`` to
            skip the comparisons that need it.
        test_x: Held-out points ``(N, 2)`` for the test NLL, or ``None``.
        bounds: The box, ``(low, high)`` for both axes or one pair per axis; it should hold
            nearly all of both densities (see ``data_mass``).
        resolution: Cells per axis; quadrature error falls as ``resolution**-2``.
        chunk: Points per energy call.
    """
    energy = as_energy(energy)
    if energy.event_shape is not None and tuple(energy.event_shape) != (2,):
        raise ValueError(f"grid_evaluation needs a 2-D energy, got event shape "
                         f"{tuple(energy.event_shape)}")
    if isinstance(dataset, str):
        import ebmcore

        dataset = ebmcore.create("dataset", dataset)
    if dataset is not None and not getattr(dataset, "has_log_prob", callable(
            getattr(dataset, "log_prob", None))):
        raise ValueError(f"dataset {type(dataset).__name__} has no closed-form log_prob")
    check_int("chunk", chunk, minimum=1)
    bounds = _check_bounds(bounds)
    dtype, device = _model_dtype(energy)
    was_training = energy.training
    energy.eval()
    try:
        points, area = make_grid(bounds, resolution, dtype, device)
        neg_e = -_energies(energy, points, chunk)
        if not bool(torch.isfinite(neg_e).all()):
            raise ValueError("the energy is non-finite at some grid points")
        log_z = float(torch.logsumexp(neg_e, 0)) + math.log(area)
        log_q = neg_e - log_z
        nll = data_nll = kl = tv = mass = None
        if test_x is not None:
            test_x = check_points("test_x", test_x, (2,))
            e_test = _energies(energy, test_x.to(dtype=dtype, device=device), chunk)
            nll = float(e_test.mean()) + log_z
        if dataset is not None:
            log_p = dataset.log_prob(points.to(torch.float64).cpu()).to(torch.float64)
            log_p = log_p.to(log_q.device)
            log_mass = float(torch.logsumexp(log_p, 0)) + math.log(area)
            mass = math.exp(log_mass)
            log_p = log_p - log_mass
            p, q = log_p.exp(), log_q.exp()
            # Cells where the data density is zero (e.g. a checkerboard's white squares)
            # contribute nothing to KL(data || model).
            kl_terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
            kl = float(kl_terms.sum()) * area
            tv = 0.5 * float((p - q).abs().sum()) * area
            if test_x is not None:
                data_nll = -float(dataset.log_prob(test_x.to(torch.float64).cpu()).mean())
    finally:
        energy.train(was_training)
    gap = None if nll is None or data_nll is None else nll - data_nll
    return GridEvaluation(log_z=log_z, nll=nll, data_nll=data_nll, nll_gap=gap, kl=kl, tv=tv,
                          data_mass=mass, resolution=resolution, bounds=bounds)
