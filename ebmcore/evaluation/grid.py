"""Exact evaluation of 2-D energies over the whole plane: a grid on a box, rings around it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ebmcore.dataset import Dataset
from ebmcore.energy import Energy, as_energy
from ebmcore.evaluation._model import eval_mode, placement
from ebmcore.evaluation.box import check_box, evaluation_box
from ebmcore.evaluation.tails import FarField, far_field
from ebmcore.validation import check_energy_output, check_int, check_points


@dataclass
class GridEvaluation:
    """What :func:`grid_evaluation` reports (all in nats).

    The model's normaliser is taken over the whole plane: the box by the midpoint rule, and
    nested boxes around it (each three times as wide as the last) for the mass outside. The
    likelihood figures are given only when the energy is a density, that is when it rises
    far away (see :func:`ebmcore.evaluation.tails.far_field`) and the outermost ring holds a
    negligible share of the mass; otherwise they are ``None`` and ``status`` says why.

    Attributes:
        status: ``"normalisable"``, or ``"not normalisable: <reason>"``.
        normalisable: Whether the whole-plane figures below could be given.
        log_z: The model's log normaliser over the whole plane, or ``None``.
        log_z_box: The log of ``∫ exp(-E)`` over the box alone (not a normaliser of the model).
        outside_mass: Share of the model's mass (up to the outermost ring) outside the box;
            ``None`` when the energy is NaN or ``-inf`` in a ring.
        outside_mass_3x: Share outside the box three times as wide (the first ring excluded).
        ring_masses: Share of the mass in each ring, innermost first (empty with ``None``).
        ring_half_widths: Half-widths of the rings' outer boxes, as multiples of the box's.
        far_field: The far-field probe (radii, least energies, log-log slope, verdict).
        nll: Mean negative log-likelihood of ``test_x`` under the normalised model.
        data_nll: Mean negative log-likelihood of ``test_x`` under the data set's density.
        nll_gap: ``nll - data_nll``; zero for a perfect model, in expectation.
        kl: ``KL(data || model)``, the data density renormalised to the box and the model
            normalised over the whole plane (so mass the model puts outside counts).
        tv: Total-variation distance, on the same terms (mass outside the box included).
        data_mass: The data density's mass inside the box (should be close to 1).
        resolution: Grid points per axis of the box.
        bounds: ``((x_low, x_high), (y_low, y_high))``.
    """

    status: str
    normalisable: bool
    log_z: float | None
    log_z_box: float
    outside_mass: float | None
    outside_mass_3x: float | None
    ring_masses: list[float]
    ring_half_widths: list[float]
    far_field: FarField
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
    (x0, x1), (y0, y1) = check_box(bounds, dim=2)
    return (x0, x1), (y0, y1)


#: The box :func:`grid_evaluation` uses when neither ``bounds``, the data set nor test
#: points give one.
DEFAULT_BOUNDS = (-4.0, 4.0)


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


#: Each ring's outer box is this many times as wide as the one inside it.
RING_FACTOR = 3


def _ring_log_masses(energy: Energy, bounds: tuple[tuple[float, float], tuple[float, float]],
                     n_rings: int, resolution: int, dtype: torch.dtype, device: torch.device,
                     chunk: int) -> list[float]:
    """Return ``log ∫ exp(-E)`` over each ring between nested boxes.

    Ring ``k`` is the box scaled by ``3**k`` about its centre, less the box scaled by
    ``3**(k-1)``: nine blocks the size of the inner box, the centre one left out, each block
    cut into ``resolution**2`` cells.
    """
    (x0, x1), (y0, y1) = bounds
    cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    n = RING_FACTOR * resolution
    index = torch.arange(n)
    inner = (index >= resolution) & (index < 2 * resolution)
    outer_cells = ~(inner[:, None] & inner[None, :]).reshape(-1)  # make_grid's "ij" order
    logs = []
    for scale in _ring_scales(n_rings):
        box = ((cx - scale * hx, cx + scale * hx), (cy - scale * hy, cy + scale * hy))
        points, area = make_grid(box, n, dtype, device)
        neg_e = -_energies(energy, points[outer_cells.to(points.device)], chunk)
        if bool(torch.isnan(neg_e).any()) or bool((neg_e == math.inf).any()):
            raise _NotNormalisable(f"the energy is NaN or -inf in the ring out to {scale:g} "
                                   f"times the box")
        logs.append(float(torch.logsumexp(neg_e, 0)) + math.log(area))
    return logs


def _ring_scales(n_rings: int) -> list[float]:
    """Half-widths of the rings' outer boxes, as multiples of the box's: 3, 9, 27, ..."""
    return [float(RING_FACTOR ** k) for k in range(1, n_rings + 1)]


class _NotNormalisable(Exception):
    """Raised inside the evaluation when the energy cannot be a density; caught there."""


def grid_evaluation(energy: Energy, dataset: Any = None, test_x: torch.Tensor | None = None,
                    bounds: Any = None, resolution: int = 256, *,
                    chunk: int = 65536, n_rings: int = 4, ring_resolution: int | None = None,
                    far_radii: Any = None, mass_tolerance: float = 1e-6) -> GridEvaluation:
    """Normalise a 2-D energy over the whole plane and compare it with the data's density.

    The box is integrated by the midpoint rule; around it ``n_rings`` rings between nested
    boxes, each three times as wide as the last, count the mass outside (four rings reach
    81 times the box). The energy must also rise far away: :func:`far_field` probes rays at
    ``far_radii`` and asks for a log-log slope above 2 in every direction and, when
    ``test_x`` is given, an energy at the largest radius above the highest energy on the test
    points. Only when that holds and the outermost ring holds at most ``mass_tolerance`` of
    the mass are NLL, KL and TV reported, with the normaliser over the whole plane; otherwise
    they are ``None`` and ``status`` says "not normalisable" and why.

    Args:
        energy: A 2-D energy ``E``; the model density is ``exp(-E) / Z``.
        dataset: A data set with ``log_prob`` (instance or registered name), or ``None`` to
            skip the comparisons that need it.
        test_x: Held-out points ``(N, 2)`` for the test NLL, or ``None``.
        bounds: The box, ``(low, high)`` for both axes or one pair per axis; it should hold
            nearly all of the data density (see ``data_mass``). ``None`` takes the data
            set's :attr:`~ebmcore.Dataset.evaluation_box`, else a box around ``test_x``
            (:func:`ebmcore.evaluation.box.box_from_samples`), else ``(-4, 4)``.
        resolution: Cells per axis of the box; quadrature error falls as ``resolution**-2``.
        chunk: Points per energy call.
        n_rings: Rings of nested boxes outside the box (at least 1).
        ring_resolution: Cells per axis of each of a ring's nine blocks (default
            ``resolution // 2``).
        far_radii: Radii of the far-field probe, from the box's centre (default 2, 20 and
            200 times the box's larger half-width: 10, 100, 1000 for ``(-5, 5)``).
        mass_tolerance: Largest share of the mass the outermost ring may hold for the mass
            to count as resolved.
    """
    energy = as_energy(energy)
    if energy.event_shape is not None and tuple(energy.event_shape) != (2,):
        raise ValueError(f"grid_evaluation needs a 2-D energy, got event shape "
                         f"{tuple(energy.event_shape)}")
    if isinstance(dataset, str):
        from ebmcore.registry import create

        dataset = create("dataset", dataset)
    if dataset is not None and not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be an ebmcore.Dataset, a registered name or None, got "
                        f"{type(dataset).__name__}")
    if dataset is not None and not dataset.has_log_prob:
        raise ValueError(f"dataset {type(dataset).__name__} has no closed-form log_prob")
    check_int("chunk", chunk, minimum=1)
    check_int("n_rings", n_rings, minimum=1)
    ring_resolution = check_int("ring_resolution", resolution // 2 if ring_resolution is None
                                else ring_resolution, minimum=2)
    if not 0 < mass_tolerance < 1:
        raise ValueError(f"mass_tolerance must be in (0, 1), got {mass_tolerance}")
    if test_x is not None:
        test_x = check_points("test_x", test_x, (2,))
    bounds = _check_bounds(evaluation_box(dataset, test_x, bounds, default=DEFAULT_BOUNDS))
    (x0, x1), (y0, y1) = bounds
    half = max(x1 - x0, y1 - y0) / 2
    far_radii = [2 * half, 20 * half, 200 * half] if far_radii is None else far_radii
    dtype, device = placement(energy, torch.get_default_dtype())
    scales = _ring_scales(n_rings)
    with eval_mode(energy):
        points, area = make_grid(bounds, resolution, dtype, device)
        neg_e = -_energies(energy, points, chunk)
        if not bool(torch.isfinite(neg_e).all()):
            raise ValueError("the energy is non-finite at some grid points")
        log_z_box = float(torch.logsumexp(neg_e, 0)) + math.log(area)
        e_test = None
        if test_x is not None:
            e_test = _energies(energy, test_x.to(dtype=dtype, device=device), chunk)
        reference = None if e_test is None else float(e_test.max())
        far = far_field(energy, ((x0 + x1) / 2, (y0 + y1) / 2), far_radii,
                        reference_energy=reference)
        # With a ring that cannot be integrated there is no mass to report (None, [], None).
        log_total = outside = outside_3x = None
        ring_masses: list[float] = []
        try:
            ring_logs = _ring_log_masses(energy, bounds, n_rings, ring_resolution, dtype,
                                         device, chunk)
        except _NotNormalisable as exc:
            problem = str(exc)
        else:
            all_logs = torch.tensor([log_z_box, *ring_logs], dtype=torch.float64)
            log_total = float(torch.logsumexp(all_logs, 0))
            shares = (all_logs - log_total).exp()
            ring_masses = [float(v) for v in shares[1:]]
            outside, outside_3x = float(shares[1:].sum()), float(shares[2:].sum())
            problem = ""
            if not far.rises:
                problem = far.reason
            elif ring_masses[-1] > mass_tolerance:
                problem = (f"{ring_masses[-1]:.3g} of the mass lies in the outermost ring, out "
                           f"to {scales[-1]:g} times the box; the mass is not resolved")
        normalisable = not problem
        log_z = log_total if normalisable else None
        nll = data_nll = kl = tv = mass = None
        if normalisable and e_test is not None:
            nll = float(e_test.mean()) + log_total
        if dataset is not None:
            log_p = dataset.log_prob(points.to(torch.float64).cpu()).to(torch.float64)
            log_p = log_p.to(neg_e.device)
            log_mass = float(torch.logsumexp(log_p, 0)) + math.log(area)
            mass = math.exp(log_mass)
            if normalisable:
                log_p = log_p - log_mass
                log_q = neg_e - log_total
                p, q = log_p.exp(), log_q.exp()
                # Cells where the data density is zero (e.g. a checkerboard's white squares)
                # contribute nothing to KL(data || model).
                kl_terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
                kl = float(kl_terms.sum()) * area
                tv = 0.5 * (float((p - q).abs().sum()) * area + outside)
            if test_x is not None:
                data_nll = -float(dataset.log_prob(test_x.to(torch.float64).cpu()).mean())
    gap = None if nll is None or data_nll is None else nll - data_nll
    status = "normalisable" if normalisable else f"not normalisable: {problem}"
    return GridEvaluation(status=status, normalisable=normalisable, log_z=log_z,
                          log_z_box=log_z_box, outside_mass=outside,
                          outside_mass_3x=outside_3x, ring_masses=ring_masses,
                          ring_half_widths=scales,
                          far_field=far, nll=nll, data_nll=data_nll, nll_gap=gap, kl=kl, tv=tv,
                          data_mass=mass, resolution=resolution, bounds=bounds)
