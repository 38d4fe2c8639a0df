"""Flow matching (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024) and DDPM-style
diffusion (Ho et al. 2020) as regression of a field on an interpolant's path."""

from __future__ import annotations

from typing import Any

import torch

from ebmcore.coupling import Coupling
from ebmcore.field import Field, as_field
from ebmcore.interpolant import Interpolant
from ebmcore.loss import LossOutput
from ebmcore_losses._paths import PathLoss, mean_square

#: What a field trained by flow matching may predict.
PREDICTIONS = ("velocity", "score", "noise")


class FlowMatching(PathLoss):
    """Conditional flow matching: regress a field on the path's target at random times.

    Each step draws noise ``x0 ~ N(0, I)``, pairs it with the data batch ``x1`` through the
    coupling, draws ``t ~ U(t_min, t_max)`` (or a logit-normal: ``time_sampling``) and
    places each pair on the interpolant's path, ``x_t = alpha x1 + sigma x0``. The field's
    output ``f(x_t, t)`` is regressed on:

    - ``prediction="velocity"``: the path's velocity ``u_t = alpha' x1 + sigma' x0``; the
      minimiser is the marginal velocity ``E[u_t | x_t]``, which carries noise to data;
    - ``prediction="noise"``: the noise ``x0``; the minimiser is ``E[x0 | x_t]``;
    - ``prediction="score"``: the conditional score ``-x0 / sigma``, weighted by ``sigma²``
      (denoising score matching; the loss is ``|sigma f + x0|²``, finite where ``sigma``
      vanishes); the minimiser is the marginal score ``∇ log p_t(x_t)``.

    The interpolant converts a noise or score prediction into a velocity for sampling
    (:meth:`ebmcore.Interpolant.noise_to_velocity`, ``score_to_velocity``). The loss is the
    mean over the batch of each row's mean squared error.

    Args:
        interpolant: The path, a registered name (``linear``, ``cosine``, ``vp``) or an
            :class:`ebmcore.Interpolant`.
        coupling: How noise pairs with data, a registered name (``independent``,
            ``exact_ot``, ``sinkhorn``) or an :class:`ebmcore.Coupling`.
        prediction: ``"velocity"`` (default), ``"score"`` or ``"noise"``.
        t_min: The least training time.
        t_max: The greatest training time.
        time_sampling: How the times are drawn: ``"uniform"`` (default) or
            ``"logit_normal"`` (more steps in the middle of the path; see
            :class:`~ebmcore_losses._paths.PathLoss`).
        time_loc: The logit-normal's location.
        time_scale: The logit-normal's scale.
    """

    def __init__(self, interpolant: str | Interpolant = "linear",
                 coupling: str | Coupling = "independent", prediction: str = "velocity",
                 t_min: float = 0.0, t_max: float = 1.0, time_sampling: str = "uniform",
                 time_loc: float = 0.0, time_scale: float = 1.0) -> None:
        super().__init__(interpolant, coupling, t_min, t_max, time_sampling, time_loc,
                         time_scale)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got "
                             f"{prediction!r}")
        self.prediction = prediction

    def forward(self, model: Field | Any, x: torch.Tensor) -> LossOutput:
        """Return the flow-matching loss of the field ``model`` on the data batch ``x``.

        ``model`` is an :class:`ebmcore.Field`, or an :class:`ebmcore.Energy` used as the
        field ``-∇E`` (velocity prediction only: a score or a noise is not a gradient
        flow's velocity).
        """
        field = as_field(model)
        if self.prediction != "velocity" and field.energy() is not None:
            raise TypeError(f"prediction={self.prediction!r} needs a Field model; an Energy "
                            f"serves only as the velocity field -grad E")
        path = self.draw_path(x)
        out = field(path.xt, path.t)
        if self.prediction == "velocity":
            loss = mean_square(out - path.ut)
        elif self.prediction == "noise":
            loss = mean_square(out - path.x0)
        else:
            loss = mean_square(path.sigma * out + path.x0)
        return LossOutput(loss, {})

    def flow_settings(self) -> dict[str, Any]:
        """The field predicts :attr:`prediction` on this loss's interpolant."""
        return {"prediction": self.prediction, "interpolant": self.interpolant}

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, {super().extra_repr()}"


class Diffusion(FlowMatching):
    """Multi-scale denoising on the variance-preserving path (DDPM's loss, Ho et al. 2020).

    A field learns to predict the noise ``x0`` in ``x_t = alpha x1 + sigma x0`` at a time
    ``t ~ U(0, 1 - t_eps)`` drawn per row, so one network denoises at every noise level
    (``denoising_score_matching`` trains at one or a few fixed levels). On the VP path the
    noise prediction gives the score ``-eps / sigma`` and, through the interpolant, the
    probability-flow velocity. It is :class:`FlowMatching` with ``prediction="noise"`` and
    the independent coupling.

    Args:
        interpolant: The path, ``"vp"`` by default (Song et al.'s variance-preserving SDE,
            beta from 0.1 to 20).
        t_eps: How far from the data end ``t = 1`` the times stop, where the noise level
            vanishes and predicting the noise is ill-posed (Song et al.'s ``eps``).
    """

    def __init__(self, interpolant: str | Interpolant = "vp", t_eps: float = 1e-3) -> None:
        if isinstance(t_eps, bool) or not isinstance(t_eps, (int, float)) or not 0 < t_eps < 1:
            raise ValueError(f"t_eps must be a number in (0, 1), got {t_eps!r}")
        super().__init__(interpolant, "independent", "noise", 0.0, 1.0 - float(t_eps))
        self.t_eps = float(t_eps)
