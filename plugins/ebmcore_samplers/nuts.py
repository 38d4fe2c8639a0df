"""The No-U-Turn sampler (multinomial, Betancourt 2017), chains in lockstep or asynchronous."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_int, check_positive
from ebmcore_samplers._common import (
    check_flag,
    generator_for,
    initial_energy_and_grad,
    validate_target_accept,
)
from ebmcore_samplers._nuts_tree import transition
from ebmcore_samplers.adaptation import (
    DualAveraging,
    Welford,
    find_reasonable_step_size,
    windowed_covariance,
)
from ebmcore_samplers.compiled.leapfrog import CompiledGradient
from ebmcore_samplers.compiled.loop import CompiledFlagSampler
from ebmcore_samplers.metric import Metric, check_adapt_mass, check_mass


@dataclass
class NUTSState(SamplerState):
    """State of a batch of NUTS chains.

    Attributes:
        x: Positions ``(B, *event_shape)``.
        energy: Energies ``(B,)`` at ``x``.
        grad: Gradients at ``x``.
        step_size: Per-chain step sizes ``(B,)``.
        metric: The mass matrix in use (identity, diagonal or dense; adapted in burn-in).
        search_step_size: Run the step-size heuristic before the next transition.
        dual: Step-size adaptation in progress during burn-in, else ``None``.
        welford: Covariance accumulator of the mass adaptation in progress, else ``None``.
        compiled: The compiled energy-and-gradient call (``compiled=True``), else ``None``.
        compiled_refusal: Why ``compiled=True`` fell back to eager calls, else ``None``.
    """

    step_size: torch.Tensor | None = None
    metric: Metric | None = None
    search_step_size: bool = False
    dual: DualAveraging | None = None
    welford: Welford | None = None
    compiled: CompiledGradient | None = None
    compiled_refusal: str | None = None

    @property
    def inverse_mass(self) -> torch.Tensor | None:
        """The inverse mass in use: ``(D,)`` diagonal, ``(D, D)`` dense, ``None`` identity."""
        return None if self.metric is None else self.metric.inverse_mass()



class NUTS(CompiledFlagSampler, Sampler):
    """No-U-Turn sampler with multinomial trajectory sampling, chains in lockstep by default.

    Each chain builds its own tree (Betancourt 2017, as in Stan and BlackJAX): random
    direction per doubling, the generalised U-turn criterion on every balanced sub-tree,
    divergence when the energy error exceeds ``max_energy_error``. All chains step together
    and every leapfrog step is one batched energy-and-gradient call over the chains still
    growing: on the CPU a chain whose tree has stopped leaves the batch at once, so it costs
    no further gradient (elsewhere at the end of the doubling). Per-chain ``info``:
    ``accept_prob`` (mean acceptance statistic over the tree, what adaptation targets),
    ``divergent``, ``n_grad`` (gradient evaluations, the step-size search's included),
    ``tree_depth`` and ``step_size``.

    During burn-in (``sample(..., burn_in=n)``) each chain's step size is tuned by dual
    averaging toward ``target_accept`` on its own acceptance statistic, and with
    ``adapt_mass`` a diagonal or dense mass matrix is estimated from the positions of all
    chains (Welford, regularised as in Stan) in Stan's windows
    (:func:`~ebmcore_samplers.adaptation.mass_windows`, ``schedule="stan"``). As in Stan,
    after each mass update the step-size heuristic runs again from the current step size
    with the new mass, and dual averaging starts over from what it finds.

    Args:
        step_size: Initial leapfrog step size; ``None`` finds a reasonable one per chain
            with the heuristic of Hoffman & Gelman (2014) before the first transition.
        max_tree_depth: Maximum number of trajectory doublings (at most
            ``2**max_tree_depth - 1`` gradient evaluations per transition).
        target_accept: Acceptance statistic that step-size adaptation aims for, in (0, 1).
        mass: ``None`` (identity), a vector ``(D,)`` of diagonal masses or a symmetric
            positive-definite matrix ``(D, D)``, ``D`` the flattened event size; the
            starting mass when ``adapt_mass`` is set.
        adapt_mass: ``"diag"`` or ``"dense"`` to estimate the mass during burn-in, ``None``
            to keep ``mass``. ``True`` / ``False`` are deprecated spellings of ``"diag"`` /
            ``None``.
        adapt_step_size: Tune the step size by dual averaging during burn-in.
        jitter: Draw each transition's step size uniformly from
            ``step_size * [1 - jitter, 1 + jitter]`` per chain (``0 <= jitter < 1``).
        max_energy_error: Energy error ``H - H0`` beyond which a trajectory is divergent.
        compiled: Evaluate the energy and gradient of every leaf as a compiled graph
            (:class:`~ebmcore_samplers.compiled.leapfrog.CompiledGradient`: traced once and
            called without ``torch.compile``'s per-call guards where the energy traces,
            through ``torch.compile`` otherwise; graphs over fixed batches, all chains
            (compiled in :meth:`init`) and smaller ones for the doublings in which few
            chains still grow; ``diagnostics["compile_seconds"]``).
            It repays on small models, where eager torch's fixed cost per call dominates
            the leaf. An energy that does not compile, or whose value depends on the row
            (``take_rows``), runs eagerly with a ``RuntimeWarning``
            (``diagnostics["compiled_refusal"]``).
        asynchronous: Let each chain run its own transitions (CPU, float32 or float64):
            ``sample()`` then runs on the ``async`` backend
            (:mod:`ebmcore_samplers.async_backend`), where a chain whose tree ends starts
            its next transition at once instead of waiting for the deepest tree in the
            batch, so every batched energy call carries one leaf of every chain. The same
            kernel and adaptation (a barrier at each mass window's end); it repays where
            tree depths vary between chains (Neal's funnel). A run with ``on_keep`` runs
            in lockstep on the torch backend.
    """

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def __init__(self, step_size: float | None = None, max_tree_depth: int = 10,
                 target_accept: float = 0.8, mass: Any = None,
                 adapt_mass: str | None = "diag", adapt_step_size: bool = True,
                 jitter: float = 0.0, max_energy_error: float = 1000.0,
                 compiled: bool = False, asynchronous: bool = False) -> None:
        self.step_size = None if step_size is None else check_positive("step_size", step_size)
        self.max_tree_depth = check_int("max_tree_depth", max_tree_depth, minimum=1)
        self.target_accept = validate_target_accept(target_accept)
        self.mass = check_mass(mass)
        self.adapt_mass = check_adapt_mass(adapt_mass)
        self.adapt_step_size = check_flag("adapt_step_size", adapt_step_size)
        self.jitter = check_positive("jitter", jitter, allow_zero=True)
        if self.jitter >= 1.0:
            raise ValueError(f"jitter must lie in [0, 1), got {jitter!r}")
        self.max_energy_error = check_positive("max_energy_error", max_energy_error)
        self.compiled = check_flag("compiled", compiled)
        self.asynchronous = check_flag("asynchronous", asynchronous)

    def init(self, energy: Energy, x: torch.Tensor) -> NUTSState:
        """Return the state of chains at ``x`` (a copy), caching energy and gradient.

        Args:
            energy: The target energy.
            x: Initial positions ``(B, *event_shape)``.
        """
        x, e, g = initial_energy_and_grad(energy, x)  # raises at non-finite energies
        eps = 1.0 if self.step_size is None else self.step_size
        state = NUTSState(x=x, energy=e, grad=g,
                          step_size=torch.full_like(e, eps),
                          metric=Metric(self.mass, x[0].numel(), x.dtype, x.device),
                          search_step_size=self.step_size is None)
        if self.compiled:
            self._compile(energy, state)
        return state

    @staticmethod
    def _compile(energy: Energy, state: NUTSState) -> None:
        """Compile the energy-and-gradient call on the chains (or record why not)."""
        x = state.x
        try:
            if getattr(energy, "take_rows", None) is not None:
                raise BackendUnavailableError(
                    "the energy's value depends on the row (it has take_rows), and the "
                    "compiled call evaluates a fixed batch")
            compiled = CompiledGradient(energy, x)
            compiled(energy, x.reshape(x.shape[0], -1))  # compiles now, or fails here
        except BackendUnavailableError as exc:
            state.compiled_refusal = str(exc)
            warnings.warn(f"nuts(compiled=True) evaluates its energy eagerly: {exc}",
                          RuntimeWarning, stacklevel=3)
        else:
            state.compiled = compiled

    def step(self, energy: Energy, state: NUTSState,
             generator: torch.Generator | None = None) -> tuple[NUTSState, dict[str, Any]]:
        """Run one NUTS transition for every chain.

        Args:
            energy: The target energy.
            state: The current state.
            generator: Source of randomness.
        """
        gen = generator_for(generator, state.x)
        searched = 0
        if state.search_step_size:
            state.step_size, searched = find_reasonable_step_size(
                energy, state.x, state.energy, state.grad, state.step_size, state.metric,
                gen, with_count=True)
            state.search_step_size = False
            if state.dual is not None:
                state.dual.restart(state.step_size)
        eps = state.step_size
        if self.jitter > 0:
            u = torch.rand(eps.shape, generator=gen, dtype=eps.dtype, device=eps.device)
            eps = u.mul_(2.0 * self.jitter).add_(1.0 - self.jitter).mul_(eps)
        compiled = state.compiled
        x, e, g, info = transition(
            energy, state.x, state.energy, state.grad, eps, state.metric,
            self.max_tree_depth, self.max_energy_error, gen,
            evaluate=None if compiled is None else lambda z: compiled(energy, z))
        if searched:
            info["n_grad"] += searched
        info["step_size"] = eps
        new = object.__new__(NUTSState)  # dataclasses.replace, without its per-call cost
        new.__dict__.update(state.__dict__, x=x, energy=e, grad=g)
        return new, info

    def adapt(self, state: NUTSState, info: dict[str, Any], iteration: int,
              n_adapt: int) -> NUTSState:
        """Dual-average the step sizes and estimate the mass during burn-in.

        Args:
            state: The state after burn-in step ``iteration``.
            info: That step's info.
            iteration: Burn-in step index, from 0.
            n_adapt: Number of burn-in steps.
        """
        if iteration == 0 and self.adapt_step_size:
            state.dual = DualAveraging(state.step_size, self.target_accept)
        if state.dual is not None:
            state.step_size = state.dual.update(info["accept_prob"]).to(state.x.dtype)
        if self.adapt_mass is not None:
            self._adapt_mass(state, iteration, n_adapt)
        if iteration == n_adapt - 1 and state.dual is not None:
            state.step_size = state.dual.final().to(state.x.dtype)
            state.dual = None
        return state

    def _adapt_mass(self, state: NUTSState, iteration: int, n_adapt: int) -> None:
        x = state.x
        cov = windowed_covariance(state, x, iteration, n_adapt, self.adapt_mass == "dense",
                                  "stan")
        if cov is None:
            return
        state.metric = Metric.from_covariance(cov, x.dtype, x.device)
        # The good step size changes with the mass. As Stan does, the heuristic searches
        # again from the current step size with the new mass at the next transition, which
        # then restarts dual averaging from it (mu = log(10 eps)). On the funnel (80 chains
        # in groups of 16, Stan's windows) this left fewer divergences than restarting from
        # the averaged step, as BlackJAX does: 37 against 58 per 16 chains, acceptance 0.78.
        if state.dual is not None:
            state.search_step_size = True

    def final_diagnostics(self, state: NUTSState) -> dict[str, Any]:
        """Report the per-chain step sizes and the inverse mass in use at the end.

        ``inverse_mass`` is ``(D,)`` (diagonal), ``(D, D)`` (dense) or ``None`` (identity);
        with ``compiled=True`` also ``compile_seconds`` (or ``compiled_refusal``).

        Args:
            state: The final state.
        """
        inv = state.inverse_mass
        extra: dict[str, Any] = {}
        if state.compiled is not None:
            extra["compile_seconds"] = state.compiled.compile_seconds
        if state.compiled_refusal is not None:
            extra["compiled_refusal"] = state.compiled_refusal
        return {**extra, "step_size": state.step_size.clone(),
                "inverse_mass": None if inv is None else inv.clone()}

    def state_dict(self) -> dict[str, Any]:
        """Return the sampler's settings."""
        return {"step_size": self.step_size, "max_tree_depth": self.max_tree_depth,
                "target_accept": self.target_accept,
                "mass": None if self.mass is None else self.mass.clone(),
                "adapt_mass": self.adapt_mass, "adapt_step_size": self.adapt_step_size,
                "jitter": self.jitter, "max_energy_error": self.max_energy_error,
                "compiled": self.compiled, "asynchronous": self.asynchronous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings saved by :meth:`state_dict` (validated as in the constructor).

        Args:
            state: What :meth:`state_dict` returned.
        """
        self.__init__(**state)  # type: ignore[misc]
