"""ChEES-HMC: many-chain HMC whose step size and trajectory length are tuned across chains.

Hoffman, Radul & Sountsov (2021), "An Adaptive MCMC Scheme for Setting Trajectory Lengths in
Hamiltonian Monte Carlo" (AISTATS). All chains share one step size ``eps`` and one trajectory
length ``T``; at iteration ``t`` every chain runs ``ceil(u_t * T / eps)`` leapfrog steps, where
``u_t`` is the ``t``-th point of the base-2 Halton (van der Corput) sequence mapped to
``[1 - jitter, 1]``. Every chain therefore does the same work per iteration, so the batch stays
full and no chain waits for another (unlike NUTS).

During burn-in:

- ``eps`` follows dual averaging (:class:`~ebmcore_samplers.adaptation.DualAveraging`) on the
  harmonic mean of the non-divergent chains' acceptance probabilities, toward
  ``target_accept`` (0.651, the optimum of Beskos et al. 2013 for HMC);
- ``log T`` climbs the ChEES criterion ``E[(|x' - E x'|^2 - |x - E x|^2)^2] / 4`` by Adam
  (``beta1 = 0``, ``beta2 = 0.95``, each update clipped to ``[-0.35, 0.35]``, as in TFP's
  implementation), with the expectations replaced by averages over the chains weighted by
  their acceptance probabilities (chains below ``1e-4`` and divergent ones left out); the
  final ``T`` is the iterate average of ``log T`` (weights ``k ** -0.5``);
- the mass matrix is estimated from the positions pooled over chains in the windows of
  :func:`~ebmcore_samplers.adaptation.mass_windows`; the criterion's norms are taken in that
  metric (``|c|_M^2 = c^T M c``), so it measures the chains in the whitened space the sampler
  moves in (for the identity mass it is the paper's criterion). At each mass update ``T`` is
  divided by ``sqrt(lambda_max)`` (:func:`slowest_speedup`: the slowest direction keeps its
  phase), at least a quarter turn ``pi / 2`` of a unit-variance direction; the step size's
  dual averaging goes on through the update (as in BlackJAX's ChEES), and only the average
  that gives the final step size restarts there (:class:`StepAverage`).

Work per iteration is uniform, so every chain stays busy: on a small model the cost of a
leapfrog step hardly grows with the number of chains, and 128 to 1,024 chains with a short
warm-up are the intended use (see "Which sampler for which posterior" in docs/sampling.md).
It runs on the ``torch`` backend; with ``compiled=True`` its leapfrog steps run as blocks
traced by ``torch.compile`` (:mod:`ebmcore_samplers.compiled.leapfrog`: the jittered number
of steps changes every iteration, so the block masks its spare steps).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_int, check_positive
from ebmcore_samplers import _common
from ebmcore_samplers.adaptation import (
    DualAveraging,
    Welford,
    find_reasonable_step_size,
    windowed_covariance,
)
from ebmcore_samplers.compiled.leapfrog import CompiledLeapfrog
from ebmcore_samplers.compiled.loop import CompiledFlagSampler
from ebmcore_samplers.hmc import DIVERGENCE_THRESHOLD, leapfrog_
from ebmcore_samplers.metric import Metric, check_adapt_mass, check_mass

#: Adam's decay of the squared-gradient average for ``log T`` (the paper's and TFP's 0.95).
ADAM_BETA2 = 0.95
#: Largest change of ``log T`` in one update (about ``log(2) / 2``, as in TFP).
LOG_UPDATE_CLIP = 0.35
#: Exponent of the iterate-averaging weights ``k ** -AVERAGING_DECAY`` of ``log T``.
AVERAGING_DECAY = 0.5
#: Chains accepted with at most this probability do not inform the criterion (as in TFP).
MIN_ACCEPT_WEIGHT = 1e-4
#: After a mass update, T starts at least at a quarter turn of a unit-variance direction.
MIN_WHITENED_LENGTH = 0.5 * math.pi
#: Target of the step-size heuristic run before the first iteration.
HEURISTIC_TARGET = 0.8


def halton(index: int) -> float:
    """Return the ``index + 1``-th point of the base-2 Halton (van der Corput) sequence.

    ``halton(0), halton(1), halton(2), ... = 1/2, 1/4, 3/4, 1/8, 5/8, ...``: each run of
    ``2**k`` points fills ``(0, 1)`` evenly, which jitters trajectory lengths with less
    variance than uniform draws (Hoffman et al. 2021).

    Args:
        index: A non-negative integer.
    """
    n = check_int("index", index, minimum=0) + 1
    value, scale = 0.0, 0.5
    while n:
        value += scale * (n & 1)
        n >>= 1
        scale *= 0.5
    return value


class TrajectoryAdam:
    """Adam ascent of ``log T`` on a noisy gradient, with iterate averaging.

    Adam without momentum (``beta1 = 0``, ``beta2 = 0.95``), updates clipped to
    ``[-0.35, 0.35]``, and ``T`` kept in ``[eps, max_leapfrog * eps]`` after each update.

    Args:
        trajectory_length: Initial ``T`` (positive).
        learning_rate: Adam's learning rate.
    """

    def __init__(self, trajectory_length: float, learning_rate: float) -> None:
        self.learning_rate = check_positive("learning_rate", learning_rate)
        self.log_length = math.log(check_positive("trajectory_length", trajectory_length))
        self.sq_grad = 0.0
        self.k = 0
        self.restart_average()

    def restart_average(self) -> None:
        """Forget the iterate average; the iterate and Adam's moments stay."""
        self.log_length_bar = self.log_length
        self.k_bar = 0

    def rescale(self, trajectory_length: float) -> None:
        """Start over from ``trajectory_length`` (after a mass update: the gradient's scale
        changes too, so Adam's moments are forgotten)."""
        self.log_length = math.log(check_positive("trajectory_length", trajectory_length))
        self.sq_grad = 0.0
        self.k = 0
        self.restart_average()

    @property
    def length(self) -> float:
        """The current iterate ``T``."""
        return math.exp(self.log_length)

    def final(self) -> float:
        """The averaged ``T`` to use after burn-in."""
        return math.exp(self.log_length_bar)

    def update(self, gradient: float, upper: float) -> float:
        """Take one step along ``gradient`` (d criterion / d log T); return the new ``T``
        (at most ``upper``).

        A non-finite gradient is skipped (no chain gave a usable estimate).
        """
        if math.isfinite(gradient):
            self.k += 1
            self.sq_grad = ADAM_BETA2 * self.sq_grad + (1.0 - ADAM_BETA2) * gradient**2
            scale = math.sqrt(self.sq_grad / (1.0 - ADAM_BETA2**self.k)) + 1e-20
            step = self.learning_rate * gradient / scale
            self.log_length += min(max(step, -LOG_UPDATE_CLIP), LOG_UPDATE_CLIP)
        self.log_length = min(self.log_length, math.log(upper))
        self.k_bar += 1
        w = self.k_bar ** -AVERAGING_DECAY
        self.log_length_bar = (1.0 - w) * self.log_length_bar + w * self.log_length
        return self.length

    def state_dict(self) -> dict[str, Any]:
        """Return the optimiser's state."""
        return {"learning_rate": self.learning_rate, "log_length": self.log_length,
                "sq_grad": self.sq_grad, "k": self.k, "log_length_bar": self.log_length_bar,
                "k_bar": self.k_bar}


def chees_gradient(previous: torch.Tensor, proposal: torch.Tensor, momentum: torch.Tensor,
                   accept_prob: torch.Tensor, divergent: torch.Tensor, metric: Metric,
                   scale: float) -> float:
    """Estimate the derivative of the ChEES criterion with respect to ``log T``.

    Per chain ``(|c'|_M^2 - |c|_M^2) * (c' . p') * scale``, with ``c = x - mean(x)``,
    ``c' = x' - mean_w(x')`` (mean weighted by the acceptance probabilities) and ``p'`` the
    momentum at the proposal (``c'^T M (M^-1 p') = c' . p'``, the velocity term in the
    whitened space), averaged over chains weighted by their acceptance probabilities;
    divergent and non-finite chains, and those accepted with probability at most ``1e-4``
    (whose far-flung proposals would dominate the estimate), weigh zero.

    Args:
        previous: Positions before the iteration ``(B, D)``.
        proposal: Proposed positions ``(B, D)`` (before the accept step).
        momentum: Momenta at the proposals ``(B, D)``.
        accept_prob: Acceptance probabilities ``(B,)``.
        divergent: Divergence flags ``(B,)``.
        metric: The mass matrix the iteration used.
        scale: ``d t / d log T``, the jittered trajectory length ``u * T``.

    Returns:
        The gradient estimate (NaN when no chain has weight).
    """
    finite = (torch.isfinite(proposal).all(1) & torch.isfinite(momentum).all(1) & ~divergent
              & (accept_prob > MIN_ACCEPT_WEIGHT))
    w = torch.where(finite, accept_prob, torch.zeros_like(accept_prob))
    safe = torch.where(finite[:, None], proposal, torch.zeros_like(proposal))
    total = w.sum()
    centre_new = (w @ safe) / (total + 1e-20)
    c_new = safe - centre_new
    c_old = previous - previous.mean(0)
    per_chain = ((_m_norm2(metric, c_new) - _m_norm2(metric, c_old))
                 * torch.linalg.vecdot(c_new, torch.where(finite[:, None], momentum, 0.0)))
    per_chain = torch.where(finite & torch.isfinite(per_chain), per_chain, 0.0)
    if float(total) <= 0.0:
        return math.nan
    return float(scale * (w @ per_chain) / total)


def _m_norm2(metric: Metric, c: torch.Tensor) -> torch.Tensor:
    """``c^T M c`` per row of ``c`` ``(B, D)`` (``M = S^T S``, ``S = metric.sqrt``)."""
    if metric.kind == "identity":
        return torch.linalg.vecdot(c, c)
    z = c * metric.sqrt if metric.kind == "diag" else c @ metric.sqrt.T
    return torch.linalg.vecdot(z, z)


def slowest_speedup(metric: Metric, cov: torch.Tensor) -> float:
    """Largest ``lambda`` of ``S cov S^T`` (``M = S^T S`` the metric in use, ``cov`` the next
    inverse mass): how much faster the slowest direction will move.

    On a Gaussian, a direction whose variance in the whitened coordinates of ``metric`` is
    ``lambda`` turns with angular frequency ``1 / sqrt(lambda)``; after the inverse mass
    becomes ``cov`` (about that variance), it turns ``sqrt(lambda)`` times faster. Dividing
    ``T`` by ``sqrt(lambda_max)`` keeps the slowest direction's phase, which sets ``T``.
    """
    cov = cov.to(torch.float64)
    if metric.kind == "identity":
        s = None
    else:
        s = metric.sqrt.to(device=cov.device, dtype=torch.float64)
    if cov.ndim == 1 and (s is None or metric.kind == "diag"):
        return float(cov.max() if s is None else (cov * s * s).max())
    full = torch.diag(cov) if cov.ndim == 1 else cov
    if s is not None:
        s = torch.diag(s) if s.ndim == 1 else s
        full = s @ full @ s.T
    return float(torch.linalg.eigvalsh(0.5 * (full + full.T))[-1])


def harmonic_mean_accept(accept_prob: torch.Tensor, divergent: torch.Tensor) -> float:
    """Harmonic mean of the non-divergent chains' acceptance probabilities (0 if none)."""
    a = accept_prob[~divergent]
    if a.numel() == 0:
        return 0.0
    value = float(1.0 / (1.0 / a).mean())
    return value if math.isfinite(value) else 0.0


class StepAverage:
    """Iterate average of ``log eps`` with weights ``k ** -0.75`` (dual averaging's), restarted
    at each mass update: the step size used after burn-in.

    The dual averaging itself runs through the whole burn-in and is not restarted when the
    mass changes (as in BlackJAX's ChEES): it finds the new step size within a few
    iterations. Restarting it there, as Stan does between its windows, left the step size to
    the few terminal iterations (30 of a 300-iteration burn-in); with many chains the
    harmonic mean of their acceptance is nearly all or nothing from one iteration to the
    next, and the restarted average ended with the harmonic mean at 0.76 to 0.86 against
    its target 0.651 on a 10-D Gaussian with 256 chains (acceptance 0.99 on the banana).
    Only the average restarts, so the final step size comes from the iterates under the
    final mass.
    """

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Forget the average."""
        self.log_step, self.k = 0.0, 0

    def update(self, step_size: float) -> None:
        """Add the step size of one iteration."""
        self.k += 1
        w = self.k ** -0.75
        self.log_step = (1.0 - w) * self.log_step + w * math.log(step_size)

    def final(self, current: float) -> float:
        """The averaged step size; ``current`` where no iteration was averaged."""
        return math.exp(self.log_step) if self.k else current


@dataclass
class ChEESState(SamplerState):
    """State of :class:`ChEES` chains.

    Attributes:
        t: Iterations run since :meth:`ChEES.init` (the Halton index).
        metric: The mass matrix in use.
        step_size: The shared step size (``None`` until the heuristic has run).
        trajectory_length: The shared trajectory length ``T`` (``None`` until set).
        search_step_size: Run the step-size heuristic before the next iteration.
        jitter: The Halton factor ``u`` of the last iteration.
        dual: Step-size dual averaging during burn-in (one entry), else ``None``.
        step_average: Average of ``log eps`` since the last mass update (:class:`StepAverage`)
            during burn-in, else ``None``.
        adam: Trajectory-length ascent during burn-in, else ``None``.
        welford: The running mass estimate inside a mass window, else ``None``.
        previous: Positions before the last iteration (buffer, swapped with ``x``).
        proposal, momentum, uniform: Buffers: the last proposal, its momentum, uniforms.
        compiled: The compiled leapfrog blocks (``compiled=True``), else ``None``.
        compiled_refusal: Why ``compiled=True`` fell back to eager steps, else ``None``.
    """

    t: int = 0
    metric: Metric | None = None
    step_size: float | None = None
    trajectory_length: float | None = None
    search_step_size: bool = False
    jitter: float = 1.0
    dual: DualAveraging | None = None
    step_average: StepAverage | None = None
    adam: TrajectoryAdam | None = None
    welford: Welford | None = None
    previous: torch.Tensor | None = None
    proposal: torch.Tensor | None = None
    momentum: torch.Tensor | None = None
    uniform: torch.Tensor | None = None
    compiled: CompiledLeapfrog | None = None
    compiled_refusal: str | None = None


class ChEES(CompiledFlagSampler, Sampler):
    """ChEES-HMC: jittered HMC whose shared step size and trajectory length adapt across chains.

    Every iteration, all chains run the same number of leapfrog steps,
    ``min(max_leapfrog, ceil(u * T / eps))`` with ``u`` from a Halton sequence on
    ``[1 - jitter, 1]``, then a per-chain Metropolis correction. During burn-in
    (``sample(..., burn_in=n)``) the step size ``eps`` is dual-averaged toward
    ``target_accept`` on the harmonic mean of the chains' acceptance probabilities, ``T`` is
    tuned by Adam on the ChEES criterion (Hoffman, Radul & Sountsov 2021), and the mass is
    estimated from the chains' positions in windows; see the module docstring. The criterion
    is an average over chains, so ChEES needs at least 2 (better 16 or more) chains, started
    over-dispersed.

    Per-step info (each ``(B,)``): ``accept_prob``, ``accepted``, ``divergent``,
    ``energy_error``, ``n_grad`` (leapfrog steps plus the step-size search's evaluations),
    ``step_size`` and ``n_leapfrog``. Final diagnostics: ``step_size`` ``(B,)``,
    ``inverse_mass`` and ``trajectory_length`` (the adapted ``T``).

    Args:
        step_size: Initial step size; ``None`` finds one with the heuristic of Hoffman &
            Gelman (2014) before the first iteration (median over chains).
        adapt_step_size: Tune the step size during burn-in.
        target_accept: Harmonic-mean acceptance probability to aim for, in ``(0, 1)``.
        mass: ``None`` (identity), a vector ``(D,)`` of diagonal masses, or a symmetric
            positive-definite matrix ``(D, D)``; ``D`` is the flattened event size.
        adapt_mass: ``"diag"``, ``"dense"`` or ``None`` (keep ``mass``): estimate the
            inverse mass from the chains' positions during burn-in.
        jitter: Trajectory lengths are spread over ``[(1 - jitter) T, T]``, in ``[0, 1]``.
        max_leapfrog: Most leapfrog steps per iteration (``T`` is capped at
            ``max_leapfrog * eps``).
        initial_trajectory_length: Initial ``T``; ``None`` starts at one leapfrog step.
        learning_rate: Adam's learning rate for ``log T`` (0 keeps ``T`` fixed).
        compiled: Run the leapfrog steps as blocks compiled by ``torch.compile`` (the energy
            must trace as one graph). Compiling costs seconds once per process and energy
            type (``diagnostics["compile_seconds"]``); it repays on small models, whose
            eager steps are dominated by fixed per-operation costs. Where torch.compile
            cannot run or fails on the energy, a warning says so and the steps run eagerly.
        compile_block: Leapfrog steps per compiled call, ``K``. A trajectory of ``n`` steps
            makes ``ceil(n / K)`` calls and ``K ceil(n / K)`` gradient evaluations (the
            spare steps of the last call are masked; ``n_grad`` counts them).
    """

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def __init__(self, step_size: float | None = None, adapt_step_size: bool = True,
                 target_accept: float = 0.651, mass: Any = None,
                 adapt_mass: str | None = "diag", jitter: float = 1.0,
                 max_leapfrog: int = 1000, initial_trajectory_length: float | None = None,
                 learning_rate: float = 0.025, compiled: bool = False,
                 compile_block: int = 4) -> None:
        self.step_size = None if step_size is None else check_positive("step_size", step_size)
        self.adapt_step_size = _common.check_flag("adapt_step_size", adapt_step_size)
        self.target_accept = _common.validate_target_accept(target_accept)
        self.mass = check_mass(mass)
        self.adapt_mass = check_adapt_mass(adapt_mass)
        self.jitter = check_positive("jitter", jitter, allow_zero=True)
        if self.jitter > 1.0:
            raise ValueError(f"jitter must lie in [0, 1], got {jitter!r}")
        self.max_leapfrog = check_int("max_leapfrog", max_leapfrog, minimum=1)
        self.initial_trajectory_length = (
            None if initial_trajectory_length is None
            else check_positive("initial_trajectory_length", initial_trajectory_length))
        self.learning_rate = check_positive("learning_rate", learning_rate, allow_zero=True)
        self.compiled = _common.check_flag("compiled", compiled)
        self.compile_block = check_int("compile_block", compile_block, minimum=1)

    def init(self, energy: Energy, x: torch.Tensor) -> ChEESState:
        """Return chains at a copy of ``x`` with their energy and gradient cached.

        Raises:
            ValueError: With fewer than 2 chains (the criterion is an average across chains)
                or a non-finite starting energy or gradient.
        """
        if isinstance(x, torch.Tensor) and x.ndim >= 2 and x.shape[0] < 2:
            raise ValueError(f"chees tunes its trajectory length across chains and needs at "
                             f"least 2 chains (16 or more recommended), got x with "
                             f"{x.shape[0]}")
        x, e, g = _common.initial_energy_and_grad(energy, x)  # refuses non-finite energies
        b, d = x.shape[0], x[0].numel()
        state = ChEESState(x=x, energy=e.clone(), grad=g.clone(),
                           metric=Metric(self.mass, d, x.dtype, x.device),
                           step_size=self.step_size, search_step_size=self.step_size is None,
                           previous=torch.empty_like(x), proposal=torch.empty_like(x),
                           momentum=torch.empty((b, d), dtype=x.dtype, device=x.device),
                           uniform=torch.empty(b, dtype=x.dtype, device=x.device))
        if self.step_size is not None:
            state.trajectory_length = self.initial_trajectory_length or self.step_size
        if self.compiled:
            dense = self.adapt_mass == "dense" or (self.mass is not None and self.mass.ndim == 2)
            try:
                state.compiled = CompiledLeapfrog(energy, x, "dense" if dense else "diag",
                                                  self.compile_block)
            except BackendUnavailableError as exc:
                self._fall_back(state, exc)
        return state

    @staticmethod
    def _fall_back(state: ChEESState, exc: BaseException) -> None:
        state.compiled, state.compiled_refusal = None, str(exc)
        warnings.warn(f"chees(compiled=True) runs its leapfrog steps eagerly: {exc}",
                      RuntimeWarning, stacklevel=3)

    def _trajectory(self, energy: Energy, state: ChEESState, p: torch.Tensor, eps: float,
                    n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Run ``n`` leapfrog steps from the chains into ``state.proposal`` and ``p``;
        return the end point's energies, gradients and the evaluations made."""
        x1 = state.proposal.copy_(state.x)
        if state.compiled is not None:
            metric, d = state.metric, p.shape[1]
            inv = metric.inverse_mass()
            if state.compiled.kind == "dense" and (inv is None or inv.ndim == 1):
                inv = (torch.eye(d, dtype=p.dtype, device=p.device) if inv is None
                       else torch.diag(inv))
            inv = state.compiled.inverse_mass(inv, d, p)
            try:
                x2, p2, e1, g1, evals = state.compiled(energy, state.x, p, state.energy,
                                                       state.grad, eps, n, inv)
            except BackendUnavailableError as exc:
                self._fall_back(state, exc)
            else:
                x1.copy_(x2)
                p.copy_(p2)
                return e1, g1, evals
        e1, g1 = leapfrog_(energy, state.metric, x1, p, state.grad, eps, n)
        return e1, g1, n

    def _search_step_size(self, energy: Energy, state: ChEESState,
                          gen: torch.Generator) -> int:
        """Run the heuristic from the current step size; return its evaluations."""
        start = 1.0 if state.step_size is None else state.step_size
        eps, evals = find_reasonable_step_size(
            energy, state.x, state.energy, state.grad, start, state.metric, gen,
            target=HEURISTIC_TARGET, with_count=True)
        state.step_size = float(eps.median())
        if state.trajectory_length is None:
            state.trajectory_length = self.initial_trajectory_length or state.step_size
        if state.dual is not None:
            state.dual.restart(torch.tensor([state.step_size], dtype=torch.float64))
        state.search_step_size = False
        return evals

    def n_leapfrog(self, state: ChEESState) -> int:
        """The leapfrog steps of the next iteration: ``ceil(u_t T / eps)`` in ``[1, max]``."""
        state.jitter = 1.0 - self.jitter + self.jitter * halton(state.t)
        n = math.ceil(state.jitter * state.trajectory_length / state.step_size - 1e-9)
        return min(max(n, 1), self.max_leapfrog)

    def step(self, energy: Energy, state: ChEESState,
             generator: torch.Generator | None = None
             ) -> tuple[ChEESState, dict[str, torch.Tensor]]:
        """Run one jittered trajectory of the shared length for every chain.

        Info: ``accept_prob``, ``accepted``, ``divergent``, ``energy_error``, ``n_grad``,
        ``step_size`` and ``n_leapfrog`` (each ``(B,)``).
        """
        gen = _common.generator_for(generator, state.x)
        extra = self._search_step_size(energy, state, gen) if state.search_step_size else 0
        metric, x = state.metric, state.x
        n, eps = self.n_leapfrog(state), state.step_size
        p = metric.draw_(state.momentum, gen)
        h0 = metric.kinetic(p).add_(state.energy)
        e1, g1, evals = self._trajectory(energy, state, p, eps, n)
        x1 = state.proposal
        energy_error = metric.kinetic(p).add_(e1).sub_(h0)
        divergent = ~(energy_error <= DIVERGENCE_THRESHOLD)  # NaN counts as divergent
        accept_prob = energy_error.neg().clamp_max_(0.0).exp_().nan_to_num_(nan=0.0)
        accepted = _common.rand_(state.uniform, gen) < accept_prob
        acc_b = _common.per_chain(accepted, x.ndim)
        # The new positions go to the spare buffer, so the old ones stay for the criterion.
        torch.where(acc_b, x1, x, out=state.previous)
        state.x, state.previous = state.previous, x
        torch.where(acc_b, g1.reshape(x.shape), state.grad, out=state.grad)
        torch.where(accepted, e1, state.energy, out=state.energy)
        state.t += 1
        b = x.shape[0]
        return state, {"accept_prob": accept_prob, "accepted": accepted,
                       "divergent": divergent, "energy_error": energy_error,
                       "n_grad": torch.full((b,), evals + extra, dtype=torch.long,
                                            device=x.device),
                       "step_size": torch.full((b,), eps, dtype=x.dtype, device=x.device),
                       "n_leapfrog": torch.full((b,), n, dtype=torch.long, device=x.device)}

    def adapt(self, state: ChEESState, info: dict[str, torch.Tensor], iteration: int,
              n_adapt: int) -> ChEESState:
        """Tune ``eps``, ``T`` and (in its windows) the mass after burn-in step ``iteration``."""
        if iteration == 0:
            if self.adapt_step_size:
                state.dual = DualAveraging(
                    torch.tensor([state.step_size], dtype=torch.float64), self.target_accept)
                state.step_average = StepAverage()
            if self.learning_rate > 0:
                state.adam = TrajectoryAdam(state.trajectory_length, self.learning_rate)
        accept, divergent = info["accept_prob"], info["divergent"]
        if state.dual is not None:
            mean = torch.tensor([harmonic_mean_accept(accept, divergent)], dtype=torch.float64)
            state.step_size = float(state.dual.update(mean)[0])
            state.step_average.update(state.step_size)
        if state.adam is not None:
            b = state.x.shape[0]
            gradient = chees_gradient(
                state.previous.reshape(b, -1), state.proposal.reshape(b, -1), state.momentum,
                accept, divergent, state.metric, state.jitter * state.trajectory_length)
            state.trajectory_length = state.adam.update(
                gradient, self.max_leapfrog * state.step_size)
        if self.adapt_mass is not None:
            self._adapt_mass(state, iteration, n_adapt)
        if iteration == n_adapt - 1:
            self._finish_adaptation(state)
        return state

    def _adapt_mass(self, state: ChEESState, iteration: int, n_adapt: int) -> None:
        """Pool positions inside a mass window; at its end install the estimate."""
        x = state.x
        cov = windowed_covariance(state, x, iteration, n_adapt, self.adapt_mass == "dense")
        if cov is None:
            return
        # The metric changes the best step size and the time scale of the slowest direction:
        # the dual averaging goes on (see StepAverage); T is rescaled and the averages restart.
        state.trajectory_length = max(
            state.trajectory_length / math.sqrt(slowest_speedup(state.metric, cov)),
            MIN_WHITENED_LENGTH)
        state.metric = Metric.from_covariance(cov, x.dtype, x.device)
        if state.step_average is not None:
            state.step_average.restart()
        if state.adam is not None:
            state.adam.rescale(state.trajectory_length)

    def _finish_adaptation(self, state: ChEESState) -> None:
        if state.dual is not None:
            state.step_size = state.step_average.final(state.step_size)
            state.dual = state.step_average = None
        state.search_step_size = False
        if state.adam is not None:
            state.trajectory_length = state.adam.final()
            state.adam = None
        state.trajectory_length = min(state.trajectory_length,
                                      self.max_leapfrog * state.step_size)
        state.welford = None

    def final_diagnostics(self, state: ChEESState) -> dict[str, Any]:
        """Report ``step_size`` ``(B,)``, ``inverse_mass`` and ``trajectory_length``; with
        ``compiled=True`` also ``compile_seconds`` (or ``compiled_refusal``)."""
        x = state.x
        eps = math.nan if state.step_size is None else state.step_size
        length = math.nan if state.trajectory_length is None else state.trajectory_length
        extra: dict[str, Any] = {}
        if state.compiled is not None:
            extra["compile_seconds"] = state.compiled.compile_seconds
        if state.compiled_refusal is not None:
            extra["compiled_refusal"] = state.compiled_refusal
        return {**extra,
                "step_size": torch.full((x.shape[0],), eps, dtype=x.dtype, device=x.device),
                "inverse_mass": state.metric.inverse_mass(),
                "trajectory_length": torch.tensor(length, dtype=x.dtype, device=x.device)}

    def state_dict(self) -> dict[str, Any]:
        """Return the constructor's settings."""
        return {"step_size": self.step_size, "adapt_step_size": self.adapt_step_size,
                "target_accept": self.target_accept,
                "mass": None if self.mass is None else self.mass.clone(),
                "adapt_mass": self.adapt_mass, "jitter": self.jitter,
                "max_leapfrog": self.max_leapfrog,
                "initial_trajectory_length": self.initial_trajectory_length,
                "learning_rate": self.learning_rate, "compiled": self.compiled,
                "compile_block": self.compile_block}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings saved by :meth:`state_dict` (validated as in the constructor)."""
        self.__init__(**state)  # type: ignore[misc]
