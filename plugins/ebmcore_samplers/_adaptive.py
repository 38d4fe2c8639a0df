"""What MALA and HMC share: one set of constructor arguments, their checks, and the burn-in.

The arguments (the same names and meanings in ``mala``, ``hmc``, ``nuts`` and ``chees``, see
``docs/sampling.md``):

- ``step_size``: a number, a schedule (without adaptation) or ``None``: found at the first
  step by the heuristic of Hoffman & Gelman
  (:func:`~ebmcore_samplers.adaptation.find_reasonable_step_size`), then adapted in burn-in;
- ``adapt_step_size``: dual averaging of each chain's step size toward ``target_accept``
  during burn-in;
- ``mass``: the user's mass matrix (a vector: diagonal; a matrix: dense);
- ``adapt_mass``: ``"diag"``, ``"dense"`` or ``None``: the inverse mass estimated from the
  positions pooled over chains in Stan's burn-in windows (:func:`~.adaptation.mass_windows`);
- ``jitter``: each step's step size drawn from ``step_size * [1 - jitter, 1 + jitter]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import SamplerState
from ebmcore.validation import check_positive
from ebmcore_samplers import _common
from ebmcore_samplers.adaptation import (
    DualAveraging,
    Welford,
    find_reasonable_step_size,
    windowed_covariance,
)
from ebmcore_samplers.metric import Metric, check_adapt_mass, check_mass
from ebmcore_samplers.schedules import Constant, Schedule, as_schedule, from_state_dict

#: The step size the heuristic starts its search from (in leapfrog units), as Stan does.
SEARCH_START = 1.0


@dataclass
class AdaptiveState(SamplerState):
    """State of chains of a sampler with step-size and mass adaptation.

    Attributes:
        t: Steps taken since ``init`` (the schedules' clock).
        metric: The mass matrix in use (adapted during burn-in when asked).
        step_size: Per-chain step sizes ``(B,)`` once found or adapted, else ``None`` (the
            sampler's ``step_size`` schedule applies).
        adaptation: The running :class:`DualAveraging` during burn-in.
        welford: The running mass estimate during a burn-in window.
        uniform: Buffer ``(B,)`` for uniform draws.
        n_grad: Gradient evaluations of one step per chain ``(B,)`` (long), reported as the
            info's ``n_grad``.
        search_grads: Evaluations the step-size search made (0 until it runs).
    """

    t: int = 0
    metric: Metric | None = None
    step_size: torch.Tensor | None = None
    adaptation: DualAveraging | None = None
    welford: Welford | None = None
    uniform: torch.Tensor | None = None
    n_grad: torch.Tensor | None = None
    search_grads: int = 0


def check_adaptable(step_size: Schedule | None, adapt_step_size: bool) -> None:
    """Refuse to adapt a step size that is a non-constant schedule."""
    if adapt_step_size and step_size is not None and not isinstance(step_size, Constant):
        raise ValueError(
            "step_size is a schedule, which cannot be adapted; pass adapt_step_size=False "
            "to follow the schedule, or a number to adapt it")


def check_jitter(jitter: Any) -> float:
    """Return ``jitter`` after checking ``0 <= jitter < 1``."""
    value = check_positive("jitter", jitter, allow_zero=True)
    if value >= 1.0:
        raise ValueError(f"jitter must lie in [0, 1), got {jitter!r}")
    return value


class AdaptiveSampler:
    """Mixin: the shared arguments, the first step's step-size search and the burn-in.

    A subclass calls :meth:`_set_adaptive` in its constructor, builds an
    :class:`AdaptiveState` (subclass) in ``init`` with :meth:`_adaptive_fields`, calls
    :meth:`_ensure_step_size` then :meth:`_step_sizes` at the start of ``step``, and may
    override :meth:`_from_leapfrog` (its step size in terms of a leapfrog step's) and
    :meth:`_on_metric` (work to redo when the mass changes).
    """

    #: Rows that share one adapted step size come in this many contiguous groups: 1 (all
    #: chains sample one target, so their acceptances are pooled, which keeps the dual
    #: averaging's iterates steady and the final step's acceptance at the target); parallel
    #: tempering sets one group per temperature; 0 adapts each chain on its own
    #: acceptance, as the fused kernels do (set it on an instance to adapt on them).
    step_size_groups: int = 1

    step_size: Schedule | None
    adapt_step_size: bool
    target_accept: float
    mass: torch.Tensor | None
    adapt_mass: str | None
    jitter: float

    def _set_adaptive(self, step_size: float | Schedule | None, adapt_step_size: bool,
                      target_accept: float, mass: Any, adapt_mass: Any,
                      jitter: float) -> None:
        self.step_size = None if step_size is None else as_schedule("step_size", step_size)
        self.adapt_step_size = _common.check_flag("adapt_step_size", adapt_step_size)
        self.target_accept = _common.validate_target_accept(target_accept)
        self.mass = check_mass(mass)
        self.adapt_mass = check_adapt_mass(adapt_mass)
        self.jitter = check_jitter(jitter)
        check_adaptable(self.step_size, self.adapt_step_size)

    def _adaptive_fields(self, x: torch.Tensor, grads_per_step: int) -> dict[str, Any]:
        """The :class:`AdaptiveState` fields for chains ``x`` (a copy the state owns)."""
        b = x.shape[0]
        return {"metric": Metric(self.mass, x[0].numel(), x.dtype, x.device),
                "uniform": torch.empty(b, dtype=x.dtype, device=x.device),
                "n_grad": torch.full((b,), grads_per_step, dtype=torch.long,
                                     device=x.device)}

    def _from_leapfrog(self, eps: torch.Tensor) -> torch.Tensor:
        """This sampler's step size equivalent to a leapfrog step ``eps`` (identity)."""
        return eps

    def _on_metric(self, state: AdaptiveState) -> None:
        """Called after the metric changed (MALA refactors its noise). No-op by default."""

    def _ensure_step_size(self, energy: Energy, state: AdaptiveState,
                          generator: torch.Generator) -> int:
        """With ``step_size=None``, find each chain's step size (once); return evaluations.

        Runs :func:`~ebmcore_samplers.adaptation.find_reasonable_step_size` from a leapfrog
        step of ``SEARCH_START`` with the state's metric, and stores the result (in this
        sampler's units, :meth:`_from_leapfrog`) as ``state.step_size``.
        """
        if self.step_size is not None or state.step_size is not None:
            return 0
        eps, evals = find_reasonable_step_size(
            energy, state.x, state.energy, state.grad, SEARCH_START, state.metric, generator,
            with_count=True)
        state.step_size = self._from_leapfrog(eps)
        state.search_grads = evals
        return evals

    def _step_sizes(self, state: AdaptiveState,
                    generator: torch.Generator) -> float | torch.Tensor:
        """This step's step sizes: the schedule's value or per-chain ``(B,)``, jittered."""
        eps: float | torch.Tensor = (self.step_size(state.t) if state.step_size is None
                                     else state.step_size)
        if self.jitter > 0:
            u = _common.rand_(state.uniform, generator)
            eps = u.mul(2.0 * self.jitter).add_(1.0 - self.jitter).mul_(eps)
        return eps

    def _n_grad_info(self, state: AdaptiveState, searched: int) -> torch.Tensor:
        """The info's ``n_grad``: the step's evaluations plus the search's, per chain."""
        return state.n_grad if searched == 0 else state.n_grad + searched

    def _compiled_step_sizes(self, state: AdaptiveState, t0: int, k: int,
                             draws: Any) -> torch.Tensor:
        """Steps ``t0 .. t0 + k - 1``'s step sizes ``(k, B)`` for a compiled block, drawn
        (jitter first) in the order the eager step draws them."""
        x = state.x
        b = x.shape[0]
        eps = (draws.values(self.step_size, t0, k)[:, None] if state.step_size is None
               else state.step_size.to(x.dtype)).expand(k, b)
        if self.jitter > 0:
            u = draws.uniform(k, b, tag="jitter")
            eps = u.mul(2.0 * self.jitter).add_(1.0 - self.jitter).mul_(eps)
        return eps.contiguous()

    def adapt(self, state: AdaptiveState, info: dict[str, torch.Tensor], iteration: int,
              n_adapt: int) -> AdaptiveState:
        """Dual-average the step sizes and, inside the mass windows, estimate the mass."""
        x = state.x
        if self.adapt_mass is not None:
            cov = windowed_covariance(state, x, iteration, n_adapt,
                                      self.adapt_mass == "dense", "stan")
            if cov is not None:
                state.metric = Metric.from_covariance(cov, x.dtype, x.device)
                self._on_metric(state)
                if state.adaptation is not None:
                    # A new metric changes the best step size: start the averaging over.
                    state.adaptation.restart(state.step_size)
                    return state
        if not self.adapt_step_size:
            return state
        if state.adaptation is None:
            state.adaptation = DualAveraging(
                self.step_size(0) if state.step_size is None else state.step_size,
                self.target_accept, n_chains=x.shape[0], dtype=x.dtype, device=x.device)
        state.step_size = state.adaptation.update(self._pooled(info["accept_prob"]))
        if iteration >= n_adapt - 1:
            state.step_size = state.adaptation.final()
            state.adaptation = None
        return state

    def _pooled(self, accept_prob: torch.Tensor) -> torch.Tensor:
        """Each row's acceptance replaced by its group's mean (non-finite counts as 0).

        One chain's acceptance is a noisy signal, and dual averaging on it lets the step
        size wander; the averaged step then accepts well above the target (acceptance is
        concave in the log step near 0.8: 0.90-0.94 for a target of 0.8 on Gaussians).
        Pooling the chains of one target removes that noise.
        """
        groups = self.step_size_groups
        n = accept_prob.shape[0]
        if groups < 1 or n % groups:
            return accept_prob
        a = torch.nan_to_num(accept_prob.detach(), nan=0.0, posinf=1.0, neginf=0.0)
        return a.view(groups, -1).mean(1).repeat_interleave(n // groups)

    def final_diagnostics(self, state: AdaptiveState) -> dict[str, Any]:
        """Report the per-chain step sizes and the inverse mass in use at the end."""
        x = state.x
        if state.step_size is not None:
            step = state.step_size.clone()
        elif self.step_size is not None:
            step = torch.full((x.shape[0],), self.step_size(max(state.t - 1, 0)),
                              dtype=x.dtype, device=x.device)
        else:  # never stepped
            step = torch.full((x.shape[0],), float("nan"), dtype=x.dtype, device=x.device)
        return {"step_size": step, "inverse_mass": state.metric.inverse_mass()}

    def _compiled_adapts(self) -> bool:
        """Adapting burn-in runs on the torch backend; the kept steps then run compiled."""
        return self.adapt_step_size or self.adapt_mass is not None

    def _adaptive_refusal(self, method: str) -> str | None:
        """Why the fused kernels cannot follow these settings, or ``None``."""
        if self.step_size is None:
            return (f"{method} with step_size=None finds its step size by a search at the "
                    f"first step, which the fused kernels do not run; pass a step_size to use "
                    f"a fused backend")
        return None

    def _adaptive_state_dict(self) -> dict[str, Any]:
        return {"step_size": None if self.step_size is None else self.step_size.state_dict(),
                "adapt_step_size": self.adapt_step_size, "target_accept": self.target_accept,
                "mass": None if self.mass is None else self.mass.clone(),
                "adapt_mass": self.adapt_mass, "jitter": self.jitter}

    @staticmethod
    def _adaptive_kwargs(state: dict[str, Any]) -> dict[str, Any]:
        """Constructor keywords from :meth:`_adaptive_state_dict` (older checkpoints too)."""
        step = state["step_size"]
        out = {"step_size": None if step is None else from_state_dict(step)}
        for key in ("adapt_step_size", "target_accept", "mass", "jitter"):
            if key in state:
                out[key] = state[key]
        if "adapt_mass" in state:
            value = state["adapt_mass"]
            out["adapt_mass"] = ({True: "diag", False: None}[value]
                                 if isinstance(value, bool) else value)
        return out
