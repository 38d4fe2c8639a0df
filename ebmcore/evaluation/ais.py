"""Annealed importance sampling: a stochastic bracket of an energy's log normaliser.

Forward AIS (Neal 2001) starts chains at exact samples of a base energy with known ``log_z``
and anneals along ``E_β = (1 - β) E_base + β E_target``. Its estimate of ``log Z`` is,
in expectation, a lower bound (Jensen's inequality on an unbiased estimate of ``Z``).
Reverse AIS starts at exact (or trusted) target samples and anneals back to the base; it
estimates ``Z_base / Z_target`` without bias, so ``log Z`` it gives is, in expectation, an
upper bound (Grosse et al. 2015, bidirectional Monte Carlo). A narrow bracket certifies both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy, as_energy
from ebmcore.evaluation._model import placement
from ebmcore.evaluation.reference import ReferenceGaussian
from ebmcore.evaluation.transition import MALATransition
from ebmcore.sampler import Sampler
from ebmcore.validation import check_int, check_points, check_positive

_SCHEDULES = ("sigmoid", "linear")


class AnnealedEnergy(Energy):
    """The geometric path ``E_β(x) = (1 - β) E_base(x) + β E_target(x)``.

    Args:
        base: The energy at ``β = 0``.
        target: The energy at ``β = 1``.
        beta: The current inverse temperature along the path.
    """

    def __init__(self, base: Energy, target: Energy, beta: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.target = target
        self.beta = float(beta)
        self.event_shape = target.event_shape or base.event_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``E_β(x)`` for a batch ``x``."""
        return (1.0 - self.beta) * self.base(x) + self.beta * self.target(x)

    def preconditioner(self) -> torch.Tensor | None:
        """The target's preconditioner factor, else the base's, else ``None`` (for samplers
        with ``precondition=True``): one fixed metric for the whole path."""
        tril = self.target.preconditioner()
        return self.base.preconditioner() if tril is None else tril

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Combine the two energies' own (possibly closed-form) gradients."""
        eb, gb = self.base.energy_and_grad(x)
        et, gt = self.target.energy_and_grad(x)
        b = self.beta
        return (1.0 - b) * eb + b * et, (1.0 - b) * gb + b * gt


@dataclass
class AISResult:
    """What :func:`ais` and :func:`reverse_ais` return.

    Attributes:
        log_z: The estimate ``log Z_base + log mean w`` (forward) or
            ``log Z_base - log mean w`` (reverse).
        stderr: Delta-method standard error of ``log_z``: ``sd(w) / (mean(w) sqrt(n))``.
        ess: Effective sample size of the importance weights, ``(Σw)² / Σw²``.
        bound: ``"lower"`` (forward) or ``"upper"`` (reverse), each holding in expectation.
        log_weights: Per-chain log importance weights ``(n_chains,)``.
        samples: Final chain positions (approximate target samples after forward AIS).
        acceptance: Mean acceptance probability of the transitions, when reported.
    """

    log_z: float
    stderr: float
    ess: float
    bound: str
    log_weights: torch.Tensor
    samples: torch.Tensor
    acceptance: float | None = None


def schedule(n_temps: int, kind: str = "sigmoid", *, sharpness: float = 4.0) -> torch.Tensor:
    """Return ``n_temps`` inverse temperatures from 0 to 1 (float64).

    Args:
        n_temps: Number of distributions including both ends (at least 2).
        kind: ``"sigmoid"`` (dense near both ends; Grosse et al. 2015) or ``"linear"``.
        sharpness: Steepness of the sigmoid schedule.
    """
    check_int("n_temps", n_temps, minimum=2)
    t = torch.linspace(-1.0, 1.0, n_temps, dtype=torch.float64)
    if kind == "linear":
        return (t + 1.0) / 2.0
    if kind == "sigmoid":
        s = torch.sigmoid(check_positive("sharpness", sharpness) * t)
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(f"schedule must be one of {', '.join(map(repr, _SCHEDULES))} or a "
                     f"sequence of inverse temperatures, got {kind!r}")


def _betas(n_temps: int, kind: Any) -> torch.Tensor:
    if isinstance(kind, str):
        return schedule(n_temps, kind)
    betas = torch.as_tensor(kind, dtype=torch.float64).flatten()
    if betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or bool((betas.diff() <= 0).any()):
        raise ValueError("an explicit schedule must rise strictly from 0 to 1")
    return betas


#: Step size of the core's default transition (:class:`MALATransition`).
DEFAULT_STEP_SIZE = 0.1


def _resolve_sampler(sampler: Any, params: dict[str, Any] | None) -> Sampler:
    """The transition kernel: ``None`` is the core's :class:`MALATransition` (``params``
    are its arguments; default step size 0.1), a name is looked up in the registry and built
    with ``params``, an :class:`ebmcore.Sampler` is used as it is."""
    if isinstance(sampler, Sampler):
        if params:
            raise ValueError("sampler_params apply only to a sampler given by name or to "
                             "the default transition")
        return sampler
    if sampler is None:
        return MALATransition(**({"step_size": DEFAULT_STEP_SIZE} if params is None
                                 else params))
    if not isinstance(sampler, str):
        raise TypeError(f"sampler must be None, a sampler name or an ebmcore.Sampler, got "
                        f"{type(sampler).__name__}")
    from ebmcore.registry import create

    return create("sampler", sampler, **(params or {}))


def _default_base(energy: Energy) -> Energy:
    if energy.event_shape is None:
        raise ValueError("pass base= explicitly: a standard-normal base needs an energy with "
                         "an event_shape")
    dtype, device = placement(energy, torch.get_default_dtype())
    return ReferenceGaussian.standard(energy.event_shape, dtype=dtype).to(device)


def _check_base(base: Energy) -> float:
    base = as_energy(base)
    if base.log_z is None:
        raise ValueError(f"the base energy {type(base).__name__} must know its log_z")
    return float(base.log_z)


def _log_mean_exp(log_w: torch.Tensor) -> tuple[float, float, float]:
    """Return ``log mean w``, the delta-method standard error of it, and the ESS."""
    n = log_w.numel()
    w = (log_w - log_w.max()).exp()
    mean = w.mean()
    lme = float(mean.log() + log_w.max())
    stderr = float(w.std(unbiased=True) / (mean * math.sqrt(n))) if n > 1 else math.inf
    ess = float(w.sum() ** 2 / w.pow(2).sum())
    return lme, stderr, ess


@torch.no_grad()
def _anneal(path: AnnealedEnergy, x: torch.Tensor, betas: torch.Tensor, sampler: Sampler,
            n_steps: int, generator: torch.Generator | None
            ) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """Run AIS along ``betas`` (either direction) and return log weights, samples, acceptance."""
    log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    accept_sum, accept_n = 0.0, 0
    key = sampler.acceptance_key
    for old, new in zip(betas[:-1].tolist(), betas[1:].tolist(), strict=True):
        gap = path.base(x).double() - path.target(x).double()
        log_w += (new - old) * gap
        path.beta = new
        state = sampler.init(path, x)
        for _ in range(n_steps):
            state, info = sampler.step(path, state, generator)
            if key is not None and key in info:
                accept_sum += float(info[key].double().mean())
                accept_n += 1
        x = state.x
    if not bool(torch.isfinite(log_w).all()):
        raise FloatingPointError("AIS produced non-finite log weights; use more temperatures "
                                 "or a smaller sampler step size")
    return log_w, x, (accept_sum / accept_n if accept_n else None)


def ais(energy: Energy, base: Energy | None = None, n_chains: int = 1000, n_temps: int = 200,
        *, sampler: Any = None, sampler_params: dict[str, Any] | None = None,
        n_steps: int = 1, schedule_kind: Any = "sigmoid",
        generator: torch.Generator | None = None) -> AISResult:
    """Forward AIS: a stochastic lower bound of ``log Z`` of ``energy``.

    Args:
        energy: The target energy.
        base: A start energy with exact ``sample`` and known ``log_z``, close to the target
            and wider than it; ``None`` uses a standard normal.
        n_chains: Independent annealing chains.
        n_temps: Distributions along the path, both ends included.
        sampler: The transition kernel: ``None`` (the core's Metropolis-adjusted Langevin
            step, :class:`~ebmcore.evaluation.transition.MALATransition`), a sampler name
            or an :class:`ebmcore.Sampler`. It must leave each ``E_β`` invariant (a
            Metropolis-corrected kernel), or the bound is not valid.
        sampler_params: Arguments of the default transition (``{"step_size": 0.1}`` unless
            given) or of a sampler given by name.
        n_steps: Transitions per temperature.
        schedule_kind: ``"sigmoid"``, ``"linear"`` or an explicit rising sequence of betas.
        generator: Source of randomness; the same seed gives the same bits.
    """
    energy = as_energy(energy)
    base = _default_base(energy) if base is None else as_energy(base)
    log_z_base = _check_base(base)
    if not base.has_exact_sampler:
        raise ValueError(f"the base energy {type(base).__name__} must draw exact samples")
    check_int("n_chains", n_chains, minimum=2)
    check_int("n_steps", n_steps, minimum=1)
    kernel = _resolve_sampler(sampler, sampler_params)
    betas = _betas(n_temps, schedule_kind)
    x = base.sample(n_chains, generator=generator)
    check_points("base samples", x, energy.event_shape)
    path = AnnealedEnergy(base, energy, 0.0)
    log_w, x, acc = _anneal(path, x, betas, kernel, n_steps, generator)
    lme, stderr, ess = _log_mean_exp(log_w)
    return AISResult(log_z=log_z_base + lme, stderr=stderr, ess=ess, bound="lower",
                     log_weights=log_w, samples=x, acceptance=acc)


def reverse_ais(energy: Energy, target_samples: torch.Tensor, base: Energy | None = None,
                n_temps: int = 200, *, sampler: Any = None,
                sampler_params: dict[str, Any] | None = None, n_steps: int = 1,
                schedule_kind: Any = "sigmoid",
                generator: torch.Generator | None = None) -> AISResult:
    """Reverse AIS from target samples: a stochastic upper bound of ``log Z``.

    The bound holds when ``target_samples`` are exact draws from ``exp(-E)/Z``; with
    approximate samples (long MCMC runs) it is approximate too.

    Args:
        energy: The target energy.
        target_samples: Draws from the target ``(n_chains, *event_shape)``, one per chain.
        base: The energy annealed to, with known ``log_z``; ``None`` uses a standard normal.
        n_temps: Distributions along the path, both ends included.
        sampler: The transition kernel, as in :func:`ais` (``None``: the core's MALA step).
        sampler_params: Parameters for a sampler given by name (as in :func:`ais`).
        n_steps: Transitions per temperature.
        schedule_kind: ``"sigmoid"``, ``"linear"`` or an explicit rising sequence of betas.
        generator: Source of randomness; the same seed gives the same bits.
    """
    energy = as_energy(energy)
    base = _default_base(energy) if base is None else as_energy(base)
    log_z_base = _check_base(base)
    x = check_points("target_samples", target_samples, energy.event_shape)
    if x.shape[0] < 2:
        raise ValueError("target_samples must hold at least 2 points (one chain each)")
    check_int("n_steps", n_steps, minimum=1)
    kernel = _resolve_sampler(sampler, sampler_params)
    betas = _betas(n_temps, schedule_kind).flip(0)
    path = AnnealedEnergy(base, energy, 1.0)
    log_w, x, acc = _anneal(path, x.detach().clone(), betas, kernel, n_steps, generator)
    lme, stderr, ess = _log_mean_exp(log_w)
    return AISResult(log_z=log_z_base - lme, stderr=stderr, ess=ess, bound="upper",
                     log_weights=log_w, samples=x, acceptance=acc)
