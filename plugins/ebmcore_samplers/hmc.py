"""Hamiltonian Monte Carlo with diagonal or dense mass, step-size jitter and adaptation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_int, check_positive
from ebmcore_samplers import _common
from ebmcore_samplers.adaptation import DualAveraging, Welford, mass_windows
from ebmcore_samplers.compiled import CompiledPlan, CompiledSampler, Draws, hmc_step
from ebmcore_samplers.mala import check_adaptable
from ebmcore_samplers.schedules import Schedule, as_schedule, from_state_dict

#: An energy error (H_new - H_old) above this marks the trajectory divergent.
DIVERGENCE_THRESHOLD = 1000.0


class Metric:
    """A mass matrix ``M`` for momenta over flattened points ``(B, D)``.

    Args:
        mass: ``None`` (identity), a vector ``(D,)`` (diagonal) or a matrix ``(D, D)`` (dense,
            symmetric positive definite).
        dim: ``D``, to check ``mass`` against.
        dtype: Dtype of the chains.
        device: Device of the chains.
    """

    def __init__(self, mass: torch.Tensor | None, dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.dim = dim
        self.kind = "identity" if mass is None else ("diag" if mass.ndim == 1 else "dense")
        if mass is not None and mass.shape[0] != dim:
            raise ValueError(f"mass has size {mass.shape[0]} but the points have "
                             f"{dim} coordinates per chain")
        if self.kind == "diag":
            self.inv = (1.0 / mass).to(dtype=dtype, device=device)
            self.sqrt = mass.sqrt().to(dtype=dtype, device=device)
        elif self.kind == "dense":
            mass64 = mass.to(torch.float64)
            self.inv = torch.linalg.inv(mass64).to(dtype=dtype, device=device)
            self.inv = 0.5 * (self.inv + self.inv.T)
            self.sqrt = torch.linalg.cholesky(mass64).T.to(dtype=dtype, device=device)

    @classmethod
    def from_covariance(cls, cov: torch.Tensor, dtype: torch.dtype,
                        device: torch.device) -> Metric:
        """The metric whose inverse mass is ``cov`` (a variance vector or covariance matrix)."""
        mass = 1.0 / cov if cov.ndim == 1 else torch.linalg.inv(cov)
        if cov.ndim == 2:
            mass = 0.5 * (mass + mass.T)
        return cls(mass, cov.shape[0], dtype, device)

    def draw_(self, p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fill ``p`` ``(B, D)`` with momenta ``~ N(0, M)``."""
        _common.randn_(p, generator)
        if self.kind == "diag":
            p.mul_(self.sqrt)
        elif self.kind == "dense":
            p.copy_(p @ self.sqrt)  # rows of xi @ L^T have covariance L L^T = M
        return p

    def velocity(self, p: torch.Tensor) -> torch.Tensor:
        """Return ``M^-1 p`` (``p`` itself for the identity)."""
        if self.kind == "identity":
            return p
        if self.kind == "diag":
            return p * self.inv
        return p @ self.inv

    def kinetic(self, p: torch.Tensor) -> torch.Tensor:
        """Return ``p^T M^-1 p / 2`` per chain ``(B,)``."""
        return 0.5 * torch.linalg.vecdot(p, self.velocity(p))

    def inverse_mass(self) -> torch.Tensor | None:
        """Return ``M^-1`` (vector or matrix), or ``None`` for the identity."""
        return None if self.kind == "identity" else self.inv


@dataclass
class HMCState(SamplerState):
    """State of :class:`HMC` chains.

    Attributes:
        t: Trajectories run since :meth:`HMC.init` (the schedules' clock).
        metric: The mass matrix in use (adapted during burn-in when asked).
        step_size: Per-chain step sizes ``(B,)`` once adaptation has run, else ``None``.
        adaptation: The running :class:`DualAveraging` during burn-in.
        welford: The running mass estimate during a burn-in window.
        momentum, position, uniform: Preallocated buffers.
    """

    t: int = 0
    metric: Metric | None = None
    step_size: torch.Tensor | None = None
    adaptation: DualAveraging | None = None
    welford: Welford | None = None
    momentum: torch.Tensor | None = None
    position: torch.Tensor | None = None
    uniform: torch.Tensor | None = None


def _check_mass(mass: Any) -> torch.Tensor | None:
    if mass is None:
        return None
    m = torch.as_tensor(mass, dtype=torch.float64)
    if m.ndim == 1:
        if not bool(torch.isfinite(m).all()) or not bool((m > 0).all()):
            raise ValueError("mass as a vector must hold finite positive numbers")
        return m
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"mass must be a vector (D,) or a square matrix (D, D), got shape "
                         f"{tuple(m.shape)}")
    if not torch.allclose(m, m.T):
        raise ValueError("mass as a matrix must be symmetric")
    if torch.linalg.cholesky_ex(m).info != 0:
        raise ValueError("mass as a matrix must be positive definite")
    return m


def _check_adapt_mass(value: Any) -> str | None:
    if not isinstance(value, (bool, str)):
        raise TypeError(f"adapt_mass must be False, True, 'diag' or 'dense', got {value!r}")
    if value is False:
        return None
    if value is True:
        return "diag"
    if value in ("diag", "dense"):
        return value
    raise ValueError(f"adapt_mass must be False, True, 'diag' or 'dense', got {value!r}")


class HMC(CompiledSampler, Sampler):
    """Hamiltonian Monte Carlo with a leapfrog integrator and per-chain Metropolis correction.

    Every trajectory draws momenta ``p ~ N(0, M)``, takes ``n_leapfrog`` leapfrog steps and
    accepts the end point with probability ``min(1, exp(H_old - H_new))``. The gradient at
    the current point is cached, so a trajectory costs exactly ``n_leapfrog`` gradient
    evaluations (the last one also returns the energy). A trajectory whose energy error
    exceeds 1000 (or is not finite) is flagged ``divergent`` in the info.

    During burn-in, ``adapt_step_size`` tunes each chain's step size by dual averaging and
    ``adapt_mass`` estimates the inverse mass as the (Welford, regularised) covariance of
    the positions pooled over chains, in two windows between 15 % and 90 % of burn-in.

    Args:
        step_size: Leapfrog step size, a positive number or a schedule (only with
            ``adapt_step_size=False``).
        n_leapfrog: Leapfrog steps per trajectory.
        mass: ``None`` (identity), a vector ``(D,)`` of diagonal masses, or a symmetric
            positive-definite matrix ``(D, D)``; ``D`` is the flattened event size.
        jitter: Draw each trajectory's step size uniformly from
            ``step_size * [1 - jitter, 1 + jitter]`` per chain (``0 <= jitter < 1``).
        adapt_step_size: Tune the per-chain step size during burn-in.
        adapt_mass: ``False``, ``True`` or ``"diag"`` (diagonal mass), or ``"dense"``.
        target_accept: Acceptance probability the adaptation aims for.
    """

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def __init__(self, step_size: float | Schedule, n_leapfrog: int = 10, mass: Any = None,
                 jitter: float = 0.0, adapt_step_size: bool = True,
                 adapt_mass: bool | str = False, target_accept: float = 0.8) -> None:
        self.step_size = as_schedule("step_size", step_size)
        self.n_leapfrog = check_int("n_leapfrog", n_leapfrog, minimum=1)
        self.mass = _check_mass(mass)
        self.jitter = check_positive("jitter", jitter, allow_zero=True)
        if self.jitter >= 1.0:
            raise ValueError(f"jitter must lie in [0, 1), got {jitter!r}")
        self.adapt_step_size = _common.check_flag("adapt_step_size", adapt_step_size)
        self.adapt_mass = _check_adapt_mass(adapt_mass)
        self.target_accept = _common.validate_target_accept(target_accept)
        check_adaptable(self.step_size, self.adapt_step_size)

    def init(self, energy: Energy, x: torch.Tensor) -> HMCState:
        """Return chains at a copy of ``x`` with their energy and gradient cached."""
        x, e, g = _common.initial_energy_and_grad(energy, x)
        b, d = x.shape[0], x[0].numel()
        return HMCState(x=x, energy=e.clone(), grad=g.clone(),
                        metric=Metric(self.mass, d, x.dtype, x.device),
                        momentum=torch.empty((b, d), dtype=x.dtype, device=x.device),
                        position=torch.empty_like(x),
                        uniform=torch.empty(b, dtype=x.dtype, device=x.device))

    def _step_sizes(self, state: HMCState, gen: torch.Generator) -> float | torch.Tensor:
        eps: float | torch.Tensor = (self.step_size(state.t) if state.step_size is None
                                     else state.step_size)
        if self.jitter > 0:
            u = _common.rand_(state.uniform, gen)
            eps = u.mul(2.0 * self.jitter).add_(1.0 - self.jitter).mul_(eps)
        if isinstance(eps, torch.Tensor):
            return eps.view(-1, 1)
        return eps

    def step(self, energy: Energy, state: HMCState,
             generator: torch.Generator | None = None
             ) -> tuple[HMCState, dict[str, torch.Tensor]]:
        """Run one trajectory per chain; info has ``accept_prob``, ``accepted``,
        ``divergent`` and ``energy_error``."""
        gen = _common.generator_for(generator, state.x)
        metric = state.metric
        b = state.x.shape[0]
        eps = self._step_sizes(state, gen)
        neg_eps, neg_half = -eps, -0.5 * eps
        p = metric.draw_(state.momentum, gen)
        h0 = metric.kinetic(p).add_(state.energy)
        x1 = state.position.copy_(state.x)
        xf = x1.view(b, -1)
        # Leapfrog with the two half kicks between full steps merged into one full kick.
        _common.axpy_(p, neg_half, state.grad.view(b, -1))
        e1 = g1 = None
        for i in range(self.n_leapfrog):
            _common.axpy_(xf, eps, metric.velocity(p))
            if i < self.n_leapfrog - 1:
                g1 = energy.grad(x1)
                _common.axpy_(p, neg_eps, g1.reshape(b, -1))
            else:
                e1, g1 = energy.energy_and_grad(x1)
                _common.axpy_(p, neg_half, g1.reshape(b, -1))
        energy_error = metric.kinetic(p).add_(e1.detach()).sub_(h0)
        divergent = ~(energy_error <= DIVERGENCE_THRESHOLD)  # NaN counts as divergent
        accept_prob = energy_error.neg().clamp_max_(0.0).exp_().nan_to_num_(nan=0.0)
        accepted = _common.rand_(state.uniform, gen) < accept_prob
        acc_b = _common.per_chain(accepted, state.x.ndim)
        torch.where(acc_b, x1, state.x, out=state.x)
        torch.where(acc_b, g1.detach().reshape(state.x.shape), state.grad, out=state.grad)
        torch.where(accepted, e1.detach(), state.energy, out=state.energy)
        state.t += 1
        return state, {"accept_prob": accept_prob, "accepted": accepted,
                       "divergent": divergent, "energy_error": energy_error}

    def adapt(self, state: HMCState, info: dict[str, torch.Tensor], iteration: int,
              n_adapt: int) -> HMCState:
        """Dual-average the step sizes and, inside the mass windows, estimate the mass."""
        x = state.x
        if self.adapt_mass is not None:
            for start, end in mass_windows(n_adapt):
                if iteration == start:
                    state.welford = Welford(x[0].numel(), dense=self.adapt_mass == "dense",
                                            device=x.device)
                if start <= iteration < end and state.welford is not None:
                    state.welford.update(x)
                if iteration == end - 1 and state.welford is not None:
                    state.metric = Metric.from_covariance(state.welford.covariance(),
                                                          x.dtype, x.device)
                    state.welford = None
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
        state.step_size = state.adaptation.update(info["accept_prob"])
        if iteration >= n_adapt - 1:
            state.step_size = state.adaptation.final()
            state.adaptation = None
        return state

    def final_diagnostics(self, state: HMCState) -> dict[str, Any]:
        """Report the per-chain step sizes and the inverse mass in use at the end."""
        step = (state.step_size.clone() if state.step_size is not None else
                torch.full((state.x.shape[0],), self.step_size(max(state.t - 1, 0)),
                           dtype=state.x.dtype, device=state.x.device))
        return {"step_size": step, "inverse_mass": state.metric.inverse_mass()}

    def _compiled_adapts(self) -> bool:
        """Adapting burn-in runs on the torch backend; the kept steps then run compiled."""
        return self.adapt_step_size or self.adapt_mass is not None

    def _compiled_plan(self, energy: Energy, state: HMCState, draws: Draws) -> CompiledPlan:
        """The compiled backend's plan: :func:`ebmcore_samplers.compiled.hmc_step`."""
        x, metric = state.x, state.metric
        b, d = x.shape[0], x[0].numel()

        def inputs(t0: int, k: int, dr: Draws) -> tuple[torch.Tensor, ...]:
            eps = (dr.values(self.step_size, t0, k)[:, None] if state.step_size is None
                   else state.step_size.to(x.dtype)).expand(k, b)
            if self.jitter > 0:  # drawn before the momenta, as the eager step does
                u = dr.uniform(k, b, tag="jitter")
                eps = u.mul(2.0 * self.jitter).add_(1.0 - self.jitter).mul_(eps)
            return eps.contiguous(), dr.normal(k, b, d), dr.uniform(k, b)

        consts = (None, None) if metric.kind == "identity" else (metric.inv, metric.sqrt)
        return CompiledPlan(hmc_step, static=(metric.kind, self.n_leapfrog,
                                              DIVERGENCE_THRESHOLD),
                            consts=consts, inputs=inputs, grads_per_step=self.n_leapfrog,
                            acceptance=True, divergence=True)

    def fused_refusal(self) -> str | None:
        """None: the kernels check HMC's mass settings themselves (``params_reason``)."""
        return None

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """The fused kernels' settings (see ``kernels.dispatch.run_fused``)."""
        return "hmc", {"step_size": self.step_size, "n_leapfrog": self.n_leapfrog,
                       "mass": self.mass, "jitter": self.jitter,
                       "adapt_step_size": self.adapt_step_size, "adapt_mass": self.adapt_mass,
                       "target_accept": self.target_accept}

    def state_dict(self) -> dict[str, Any]:
        """Return the parameters, the step size as a schedule state dict."""
        return {"step_size": self.step_size.state_dict(), "n_leapfrog": self.n_leapfrog,
                "mass": None if self.mass is None else self.mass.clone(),
                "jitter": self.jitter, "adapt_step_size": self.adapt_step_size,
                "adapt_mass": self.adapt_mass or False, "target_accept": self.target_accept}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.__init__(step_size=from_state_dict(state["step_size"]), **{
            k: state[k] for k in ("n_leapfrog", "mass", "jitter", "adapt_step_size",
                                  "adapt_mass", "target_accept")})
