"""Equilibrium matching (Wang & Du 2025, arXiv:2510.02300): one time-invariant field whose
descent carries noise to data, implicit (a field) or explicit (``-∇E`` of an energy)."""

from __future__ import annotations

from typing import Any

import torch

from ebmcore.coupling import Coupling
from ebmcore.field import Field, as_field
from ebmcore.interpolant import Interpolant
from ebmcore.loss import LossOutput
from ebmcore.validation import check_positive
from ebmcore_losses._paths import PathLoss, mean_square

#: The families of the target scale ``c(t)``.
SCALES = ("truncated", "linear", "constant")


class EquilibriumMatching(PathLoss):
    """Equilibrium matching: regress one time-invariant field on ``c(t) u_t``.

    Each step draws a path as flow matching does (``x_t = alpha x1 + sigma x0``, velocity
    ``u_t``) and regresses ``f(x_t)`` on ``c(t) u_t``, where the scale

        c(t) = multiplier * min(1, (1 - t) / (1 - threshold))       ("truncated")

    vanishes at the data: the learnt field is an equilibrium landscape's descent direction,
    zero on the data manifold and pointing towards it elsewhere. The field sees no time
    (it is called with ``t = 0``), so samples come from integrating ``v = f(x)`` or
    descending its energy (Nesterov or gradient descent) from noise.

    In low dimension a point does not reveal its noise level, and the optimal time-free
    field need not vanish on the data: on the 2-D ``rings`` its only attractor is the outer
    ring, so no descent gives the rings' proportions (``benchmarks/eqm_rings_field.py``;
    docs/training-results.md). Stop the descent early there (the 2-D recipe's span 0.25).

    Two variants, chosen by the model:

    - implicit (EqM): ``model`` is an :class:`ebmcore.Field` (``mlp_field``,
      ``unet_field``), called with ``t = 0`` so it learns a time-invariant field;
    - explicit (EqM-E): ``model`` is an :class:`ebmcore.Energy` and the field is its
      ``-∇E`` (through :class:`ebmcore.field.EnergyField`), so the model has a density.

    The defaults are TorchEBM 0.8.9's (``ct="truncated"``, threshold 0.8, multiplier 4,
    time-invariant). Sign: TorchEBM regresses the gradient ``∇E ≈ -c(t) u_t``; this loss
    regresses the field ``-∇E ≈ c(t) u_t``, the same objective in ebmcore's convention that a
    field points from noise towards data.

    Args:
        interpolant: The path, by name (``linear``, ``cosine``, ``vp``) or instance.
        coupling: How noise pairs with data, by name or instance.
        ct: The family of ``c(t)``: ``"truncated"`` (default), ``"linear"``
            (``multiplier (1 - t)``) or ``"constant"`` (``multiplier``; with
            ``time_invariant=False`` this is flow matching scaled by ``multiplier``).
        ct_threshold: Where the truncated decay starts, strictly inside (0, 1).
        ct_multiplier: The gradient multiplier ``lambda`` of every family.
        time_invariant: Call the field with ``t = 0`` (default); ``False`` passes the drawn
            times (a time-conditioned field).
    """

    def __init__(self, interpolant: str | Interpolant = "linear",
                 coupling: str | Coupling = "independent", ct: str = "truncated",
                 ct_threshold: float = 0.8, ct_multiplier: float = 4.0,
                 time_invariant: bool = True) -> None:
        super().__init__(interpolant, coupling)
        if ct not in SCALES:
            raise ValueError(f"ct must be one of {', '.join(SCALES)}, got {ct!r}")
        if isinstance(ct_threshold, bool) or not isinstance(ct_threshold, (int, float)) \
                or not 0.0 < ct_threshold < 1.0:
            raise ValueError(f"ct_threshold must be a number strictly inside (0, 1), got "
                             f"{ct_threshold!r}; ct='linear' and ct='constant' are its ends")
        if not isinstance(time_invariant, bool):
            raise TypeError(f"time_invariant must be True or False, got "
                            f"{type(time_invariant).__name__}")
        self.ct = ct
        self.ct_threshold = float(ct_threshold)
        self.ct_multiplier = check_positive("ct_multiplier", ct_multiplier)
        self.time_invariant = time_invariant

    def scale(self, t: torch.Tensor) -> torch.Tensor:
        """The target scale ``c(t)`` at times ``t`` ``(B,)``."""
        if self.ct == "truncated":
            c = ((1.0 - t) / (1.0 - self.ct_threshold)).clamp(max=1.0)
        elif self.ct == "linear":
            c = 1.0 - t
        else:
            c = torch.ones_like(t)
        return self.ct_multiplier * c

    def forward(self, model: Field | Any, x: torch.Tensor) -> LossOutput:
        """Return the equilibrium-matching loss of ``model`` (a Field, or an Energy used as
        ``-∇E``) on the data batch ``x``."""
        field = as_field(model)
        path = self.draw_path(x)
        c = self.scale(path.t).reshape(-1, *([1] * (x.dim() - 1)))
        clock = torch.zeros_like(path.t) if self.time_invariant else path.t
        loss = mean_square(field(path.xt, clock) - c * path.ut)
        return LossOutput(loss, {})

    def flow_settings(self) -> dict[str, Any]:
        """The field is the equilibrium's gradient, time-free unless
        ``time_invariant=False`` (sampled by integrating it as it is)."""
        return {"interpolant": self.interpolant, "time_invariant": self.time_invariant}

    def extra_repr(self) -> str:
        return (f"ct={self.ct!r}, ct_threshold={self.ct_threshold}, "
                f"ct_multiplier={self.ct_multiplier}, time_invariant={self.time_invariant}, "
                f"{super().extra_repr()}")
