"""What the simulation-free losses share: an interpolant, a coupling and the draw of a path.

Every loss here draws, from its own generator, a batch of noise ``x0 ~ N(0, I)`` shaped like
the data ``x1``, re-pairs the two with its coupling, draws one time per row and places each
pair on the interpolant's path: ``x_t = alpha x1 + sigma x0`` with velocity
``u_t = alpha' x1 + sigma' x0`` (time runs from noise, ``t = 0``, to data, ``t = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.coupling import Coupling
from ebmcore.interpolant import Interpolant, expand_like
from ebmcore.loss import Loss


def _by_name_or_instance(kind: str, value: Any, base: type, examples: str) -> Any:
    """Return ``value`` when it is a ``base`` instance, else the registered ``kind`` it names."""
    if isinstance(value, str):
        import ebmcore

        return ebmcore.create(kind, value)
    if isinstance(value, base):
        return value
    raise TypeError(f"{kind} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind} name (such as "
                    f"{examples}) or an ebmcore.{base.__name__}, got {type(value).__name__}")


def resolve_interpolant(interpolant: Any) -> Interpolant:
    """Return an interpolant from a registered name or an :class:`ebmcore.Interpolant`."""
    return _by_name_or_instance("interpolant", interpolant, Interpolant,
                                "'linear', 'cosine', 'vp'")


def resolve_coupling(coupling: Any) -> Coupling:
    """Return a coupling from a registered name or an :class:`ebmcore.Coupling`."""
    return _by_name_or_instance("coupling", coupling, Coupling,
                                "'independent', 'exact_ot', 'sinkhorn'")


def check_time_range(t_min: Any, t_max: Any) -> tuple[float, float]:
    """Return the training-time interval after checking ``0 <= t_min < t_max <= 1``."""
    for label, value in (("t_min", t_min), ("t_max", t_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{label} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"training times need 0 <= t_min < t_max <= 1, got t_min={t_min}, "
                         f"t_max={t_max}")
    return float(t_min), float(t_max)


#: How a path loss draws its training times: ``uniform`` on ``[t_min, t_max]``, or
#: ``logit_normal``, ``sigmoid(loc + scale * N(0, 1))`` mapped onto ``[t_min, t_max]``, which
#: spends more of the steps in the middle of the path (Esser et al. 2024, Stable Diffusion 3).
TIME_SAMPLINGS = ("uniform", "logit_normal")


def check_time_sampling(time_sampling: Any, time_loc: Any, time_scale: Any
                        ) -> tuple[str, float, float]:
    """Return the time distribution (:data:`TIME_SAMPLINGS`) with its ``loc`` and positive
    ``scale`` after checking them (``loc`` and ``scale`` are read by ``logit_normal``)."""
    if time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"time_sampling must be one of {', '.join(TIME_SAMPLINGS)}, got "
                         f"{time_sampling!r}")
    for label, value in (("time_loc", time_loc), ("time_scale", time_scale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise TypeError(f"{label} must be a finite number, got {value!r}")
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale!r}")
    return time_sampling, float(time_loc), float(time_scale)


@dataclass
class PathDraw:
    """One batch placed on the path.

    Attributes:
        x0: The noise, re-paired by the coupling.
        x1: The data, re-paired by the coupling.
        t: The times ``(B,)``.
        xt: The points on the path.
        ut: The path's velocity at each point (the flow-matching target).
        alpha: ``alpha(t)`` shaped to broadcast against ``x1``.
        sigma: ``sigma(t)`` shaped to broadcast against ``x1``.
    """

    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    xt: torch.Tensor
    ut: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor


class PathLoss(Loss):
    """A loss that regresses a field on points drawn along an interpolant's path.

    Args:
        interpolant: The path, by name or instance.
        coupling: How noise pairs with data, by name or instance.
        t_min: The least training time.
        t_max: The greatest training time.
        time_sampling: How the times are drawn on ``[t_min, t_max]``: ``"uniform"``
            (default) or ``"logit_normal"`` (:data:`TIME_SAMPLINGS`).
        time_loc: The logit-normal's location (``0``: centred on the middle of the range).
        time_scale: The logit-normal's scale (``1``: the SD3 default).
    """

    def __init__(self, interpolant: str | Interpolant = "linear",
                 coupling: str | Coupling = "independent", t_min: float = 0.0,
                 t_max: float = 1.0, time_sampling: str = "uniform", time_loc: float = 0.0,
                 time_scale: float = 1.0) -> None:
        super().__init__()
        self.interpolant = resolve_interpolant(interpolant)
        self.coupling = resolve_coupling(coupling)
        self.t_min, self.t_max = check_time_range(t_min, t_max)
        self.time_sampling, self.time_loc, self.time_scale = check_time_sampling(
            time_sampling, time_loc, time_scale)

    def draw_times(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """Draw ``n`` training times on ``[t_min, t_max]`` from :attr:`generator`, with
        ``like``'s device and dtype, by :attr:`time_sampling`."""
        if self.time_sampling == "uniform":
            u = torch.rand(n, generator=self.generator, device=like.device, dtype=like.dtype)
        else:
            z = torch.randn(n, generator=self.generator, device=like.device, dtype=like.dtype)
            u = torch.sigmoid(self.time_loc + self.time_scale * z)
        return self.t_min + (self.t_max - self.t_min) * u

    def draw_path(self, x1: torch.Tensor) -> PathDraw:
        """Draw noise, pair it with the data ``x1``, draw times and place the pairs on the
        path; every draw comes from :attr:`generator`."""
        if not isinstance(x1, torch.Tensor) or not x1.is_floating_point() or x1.dim() < 2:
            raise TypeError("x must be a floating-point tensor of shape (B, *event_shape)")
        x1 = x1.detach()
        x0 = torch.randn(x1.shape, generator=self.generator, device=x1.device, dtype=x1.dtype)
        x0, x1 = self.coupling.pair(x0, x1, generator=self.generator)
        t = self.draw_times(x1.shape[0], x1)
        alpha, sigma, d_alpha, d_sigma = self.interpolant.coefficients(t)
        alpha, sigma = expand_like(alpha, x1), expand_like(sigma, x1)
        xt = alpha * x1 + sigma * x0
        ut = expand_like(d_alpha, x1) * x1 + expand_like(d_sigma, x1) * x0
        return PathDraw(x0, x1, t, xt, ut, alpha, sigma)

    def extra_repr(self) -> str:
        times = ("" if self.time_sampling == "uniform" else
                 f", time_sampling={self.time_sampling!r}, time_loc={self.time_loc}, "
                 f"time_scale={self.time_scale}")
        return (f"interpolant={self.interpolant!r}, coupling={self.coupling!r}, "
                f"t_min={self.t_min}, t_max={self.t_max}{times}")


def mean_square(error: torch.Tensor) -> torch.Tensor:
    """The mean over rows of each row's mean squared entry (so the scale does not grow with
    the dimension)."""
    return error.square().reshape(error.shape[0], -1).mean(dim=1).mean()
