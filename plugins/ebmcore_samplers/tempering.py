"""Parallel tempering (replica exchange) with every replica in one batch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.validation import check_int, check_points
from ebmcore_samplers._common import generator_for, per_chain
from ebmcore_samplers.compiled import (
    CompiledPlan,
    CompiledSampler,
    Draws,
    state_carry,
    store_carry,
    tempering_step,
)


class RowTemperedEnergy(Energy):
    """A batch of replicas at different temperatures: row ``i`` has energy ``beta[i] * E(x_i)``.

    One call evaluates the wrapped energy once on the whole batch and scales each row by its
    inverse temperature. Samplers that evaluate a subset of rows (NUTS, after some chains
    have finished their trees) call :meth:`take_rows` to get the matching energy.

    Args:
        energy: The untempered energy ``E``.
        beta: Inverse temperatures ``(N,)``, one per row of the batches it will see.
    """

    def __init__(self, energy: Energy, beta: torch.Tensor) -> None:
        super().__init__()
        self.base = energy
        self.beta = beta
        self.event_shape = energy.event_shape

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.beta.shape[0]:
            raise ValueError(f"this tempered energy holds {self.beta.shape[0]} replica rows "
                             f"but got a batch of {x.shape[0]}")
        return self.beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``beta * E(x)`` row by row."""
        return self.base(x) * self._rows(x)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the tempered energies and gradients from one call of the wrapped energy."""
        beta = self._rows(x)
        e, g = self.base.energy_and_grad(x)
        return e * beta, g * per_chain(beta, x.ndim)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return the tempered gradients ``beta * grad E(x)``."""
        beta = self._rows(x)
        return self.base.grad(x) * per_chain(beta, x.ndim)

    def take_rows(self, index: torch.Tensor) -> RowTemperedEnergy:
        """Return the tempered energy of the rows ``index`` only.

        Args:
            index: Row indices ``(N',)``.
        """
        return RowTemperedEnergy(self.base, self.beta.index_select(0, index))


@dataclass
class PTState(SamplerState):
    """State of parallel tempering: the ``T = 1`` replica on top, every replica underneath.

    Attributes:
        x: Positions of the ``T = 1`` replica ``(B, *event)`` (a view of the first rows).
        energy: Its energies ``(B,)`` (``None`` when the base sampler caches none).
        grad: Its gradients (``None`` when the base sampler caches none).
        base_state: The base sampler's state over all ``R * B`` replica rows, row
            ``r * B + b`` holding chain ``b`` at temperature ``temperatures[r]``.
        tempered: The row-tempered energy the base sampler steps on.
        base_info: The base sampler's info from the last step (its adaptation reads it).
        n_steps: Base steps taken (the swap clock).
        n_swaps: Swap rounds done (their parity alternates the pairs tried).
        swap_accept_sum: Summed swap acceptance probabilities per neighbouring pair.
        swap_attempts: Swaps attempted per neighbouring pair.
    """

    base_state: Any = None
    tempered: RowTemperedEnergy | None = None
    base_info: dict[str, Any] = field(default_factory=dict)
    n_steps: int = 0
    n_swaps: int = 0
    swap_accept_sum: torch.Tensor | None = None
    swap_attempts: torch.Tensor | None = None


def check_temperatures(temperatures: Any) -> tuple[float, ...]:
    """Return the ladder as floats: at least two, finite, positive, increasing, ``1.0`` first.

    Args:
        temperatures: The temperature ladder.
    """
    if isinstance(temperatures, torch.Tensor):
        temperatures = temperatures.detach().cpu().reshape(-1).tolist()
    if isinstance(temperatures, (str, bytes)) or not isinstance(temperatures, Sequence):
        raise TypeError(f"temperatures must be a sequence of numbers, got "
                        f"{type(temperatures).__name__}")
    out = []
    for t in temperatures:
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise TypeError(f"temperatures must hold numbers, got {t!r}")
        out.append(float(t))
    if len(out) < 2:
        raise ValueError(f"temperatures must hold at least two values, got {out}")
    if not all(math.isfinite(t) and t > 0 for t in out):
        raise ValueError(f"temperatures must be finite and positive, got {out}")
    if out[0] != 1.0:
        raise ValueError(f"temperatures must start at 1.0 (the target), got {out[0]}")
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise ValueError(f"temperatures must be strictly increasing, got {out}")
    return tuple(out)


class ParallelTempering(CompiledSampler, Sampler):
    """Replica exchange over a temperature ladder, all replicas batched into one energy call.

    Each of the ``B`` chains has one replica per temperature ``T_r``, targeting
    ``exp(-E(x) / T_r)``. The base sampler advances all ``R * B`` replicas together on a
    row-tempered energy (one energy call per base step); every ``swap_every`` steps,
    neighbouring temperatures ``(r, r + 1)`` propose to exchange their positions with the
    Metropolis probability ``min(1, exp((1/T_r - 1/T_{r+1}) (E(x_r) - E(x_{r+1}))))``,
    alternating even pairs ``(0,1), (2,3)...`` and odd pairs ``(1,2), (3,4)...``. The kept
    samples are the ``T = 1`` replica, shape ``(B, *event)``.

    The swap moves positions with their cached energy and gradient; everything else in the
    base state (per-chain step sizes, momenta, buffers) stays with its temperature slot, so a
    step size adapted for ``T_r`` keeps serving ``T_r``. Base samplers whose state caches no
    energy cost one extra (forward-only) energy call per swap round. Per-chain ``info``: the
    base sampler's entries for the ``T = 1`` replica, ``swap_accept_prob``
    ``(R - 1, B)`` (zero for pairs not tried this step) and ``swap_attempted`` ``(R - 1,)``;
    ``diagnostics["swap_acceptance"]`` is the mean swap acceptance per pair after burn-in.

    ``backend="compiled"`` works where the base sampler has a compiled backend (langevin,
    mala, hmc, underdamped_langevin): blocks of steps trace the base's compiled step with
    the swap rounds inside (:func:`ebmcore_samplers.compiled.tempering_step`), so
    ``swap_every`` may be anything, 1 included, without eager work between steps. The
    blocks hold the replicas chain-major (row ``b * R + r``) so that chunks of chains swap
    within themselves (``compile_chunk`` counts rows, all replicas included); the swap
    uniforms come, like every draw, from the user's generator. An adapting base (MALA, HMC)
    adapts during an eager burn-in, as it does alone. The knobs ``compile_block``,
    ``compile_mode`` and ``compile_chunk`` are this sampler's own, not the base's.

    Args:
        base: The sampler run at every temperature: a Sampler instance, or a registered name
            built with ``base_params``.
        temperatures: Increasing ladder starting at ``1.0``, e.g. ``(1, 2, 4, 8)``.
        swap_every: Base steps between swap rounds.
        base_params: Parameters for the base sampler when ``base`` is a name.
    """

    def __init__(self, base: Sampler | str, temperatures: Sequence[float],
                 swap_every: int = 1, base_params: dict[str, Any] | None = None) -> None:
        if isinstance(base, str):
            if base_params is not None and not isinstance(base_params, dict):
                raise TypeError(f"base_params must be a dict, got {type(base_params).__name__}")
            import ebmcore

            base = ebmcore.create("sampler", base, **(base_params or {}))
        elif isinstance(base, Sampler):
            if base_params:
                raise ValueError("base_params applies only when base is a sampler name; "
                                 "configure the base sampler instance directly")
        else:
            raise TypeError(f"base must be a Sampler instance or a sampler name, got "
                            f"{type(base).__name__}")
        self.base = base
        self.temperatures = check_temperatures(temperatures)
        if getattr(base, "step_size_groups", 0) >= 1:
            # Replicas are temperature-major: each temperature adapts its own step size.
            base.step_size_groups = len(self.temperatures)
        self.swap_every = check_int("swap_every", swap_every, minimum=1)
        self.acceptance_key = base.acceptance_key
        self.divergence_key = getattr(base, "divergence_key", None)

    @property
    def grads_per_step(self) -> int | None:  # type: ignore[override]
        """Gradient evaluations per step and chain: the base's, once per replica."""
        base = getattr(self.base, "grads_per_step", None)
        return None if base is None else base * self.n_replicas

    @property
    def supports_compiled(self) -> bool:  # type: ignore[override]
        """Whether ``backend="compiled"`` is available: whether the base sampler has it."""
        return bool(self.base.supports_compiled)

    def compiled_refusal(self) -> str | None:
        """Why not compiled: a base sampler without a compiled step."""
        if self.supports_compiled:
            return None
        return f"its base sampler {type(self.base).__name__} has no compiled backend"

    @property
    def compiled_rows_per_chain(self) -> int:  # type: ignore[override]
        """Every chain steps one row per temperature: what the ``auto`` rule counts."""
        return self.n_replicas

    def _compiled_adapts(self) -> bool:
        """Whether the base adapts during burn-in (which then runs eagerly)."""
        return bool(self.base._compiled_adapts())

    def _compiled_plan(self, energy: Energy, state: PTState, draws: Draws) -> CompiledPlan:
        """The compiled plan: :func:`~ebmcore_samplers.compiled.tempering_step` around the
        base's plan, its rows reordered chain-major (and back in ``finish``)."""
        base_state, r = state.base_state, self.n_replicas
        n = base_state.x.shape[0]
        b, dtype, device = n // r, base_state.x.dtype, base_state.x.device
        plan = self.base._compiled_plan(state.tempered, base_state, draws)
        # order[i]: the state's (temperature-major) row that chain-major row i holds.
        order = torch.arange(n, device=device).view(r, b).T.reshape(-1)
        inverse = torch.argsort(order)
        carry = state_carry(base_state, plan.extra)
        tallies = tuple(torch.zeros(n, dtype=dtype, device=device) for _ in range(2))
        n0, swaps0 = state.n_steps, state.n_swaps

        def rounds(n_steps: int) -> int:
            """Swap rounds done after ``n_steps`` base steps (the state's clock)."""
            return swaps0 + n_steps // self.swap_every - n0 // self.swap_every

        def inputs(t0: int, k: int, d: Draws) -> tuple[torch.Tensor, ...]:
            swap = torch.zeros(k, dtype=dtype, device=device)
            parity = torch.zeros(k, dtype=dtype, device=device)
            u = torch.ones(k, n, dtype=dtype, device=device)
            base = tuple(v[:, order] if v.ndim > 1 and v.shape[1] == n else v
                         for v in plan.inputs(t0, k, d))
            for i in range(k):
                step = t0 + i + 1  # n_steps after this step (t0 counts from init, too)
                if step % self.swap_every == 0:
                    par = rounds(step - 1) % 2
                    lo = list(range(par, r - 1, 2))
                    swap[i], parity[i] = 1.0, float(par)
                    u[i].view(b, r)[:, lo] = d.uniform(len(lo), b, tag="swap").T
            return (swap, parity, u, *base)

        def finish(final: tuple[torch.Tensor, ...], n_run: int) -> None:
            *base_carry, sums, attempts = (t[inverse] for t in final)
            store_carry(base_state, base_carry, plan.extra, n_run)
            state.swap_accept_sum += sums.view(r, b)[:-1].sum(1)
            state.swap_attempts += attempts.view(r, b)[:-1].sum(1).round().long()
            state.n_steps, state.n_swaps = n0 + n_run, rounds(n0 + n_run)
            self._expose(state)

        beta = torch.tensor([1.0 / t for t in self.temperatures], dtype=dtype, device=device)
        return CompiledPlan(
            tempering_step, static=(plan.step, plan.static, r), consts=(beta, *plan.consts),
            inputs=inputs, grads_per_step=plan.grads_per_step, acceptance=plan.acceptance,
            divergence=plan.divergence, replicas=r, counted=True,
            carry=tuple(t[order] for t in (*carry, *tallies)), finish=finish)

    @property
    def n_replicas(self) -> int:
        """Number of temperatures ``R``."""
        return len(self.temperatures)

    def init(self, energy: Energy, x: torch.Tensor) -> PTState:
        """Start every replica of chain ``b`` at ``x[b]`` (copies) and initialise the base.

        Args:
            energy: The target energy (``T = 1``).
            x: Initial positions ``(B, *event_shape)``.
        """
        check_points("x", x, energy.event_shape)
        b, r = x.shape[0], self.n_replicas
        x_all = x.detach().repeat(r, *([1] * (x.ndim - 1)))
        beta = torch.tensor([1.0 / t for t in self.temperatures], dtype=x.dtype,
                            device=x.device).repeat_interleave(b)
        tempered = RowTemperedEnergy(energy, beta)
        base_state = self.base.init(tempered, x_all)
        state = PTState(x=x, energy=None, base_state=base_state, tempered=tempered,
                        swap_accept_sum=torch.zeros(r - 1, dtype=x.dtype, device=x.device),
                        swap_attempts=torch.zeros(r - 1, dtype=torch.long, device=x.device))
        return self._expose(state)

    def _expose(self, state: PTState) -> PTState:
        """Point ``x``, ``energy`` and ``grad`` at the ``T = 1`` rows of the base state."""
        b = state.base_state.x.shape[0] // self.n_replicas
        base = state.base_state
        state.x = base.x[:b]
        state.energy = None if base.energy is None else base.energy[:b]
        grad = getattr(base, "grad", None)
        state.grad = None if grad is None else grad[:b]
        return state

    def step(self, energy: Energy, state: PTState,
             generator: torch.Generator | None = None) -> tuple[PTState, dict[str, Any]]:
        """Advance every replica once with the base sampler, then maybe swap neighbours.

        Args:
            energy: The target energy (``T = 1``); must be the one given to :meth:`init`.
            state: The current state.
            generator: Source of randomness.
        """
        if state.tempered is None or state.tempered.base is not energy:
            raise ValueError("energy differs from the one this state was initialised with")
        gen = generator_for(generator, state.x)
        base_state, base_info = self.base.step(state.tempered, state.base_state, gen)
        state.base_state, state.base_info = base_state, base_info
        state.n_steps += 1
        r = self.n_replicas
        b = base_state.x.shape[0] // r
        prob = torch.zeros(r - 1, b, dtype=base_state.x.dtype, device=base_state.x.device)
        attempted = torch.zeros(r - 1, dtype=torch.bool, device=base_state.x.device)
        if state.n_steps % self.swap_every == 0:
            prob, attempted = self._swap(energy, state, gen)
        info = {k: v[:b] for k, v in base_info.items()
                if isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == r * b}
        if "n_grad" in base_info:  # every replica of a chain costs its gradients
            info["n_grad"] = base_info["n_grad"].view(r, b).sum(0)
        info["swap_accept_prob"] = prob
        info["swap_attempted"] = attempted
        return self._expose(state), info

    def _swap(self, energy: Energy, state: PTState, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        base = state.base_state
        r = self.n_replicas
        x = base.x
        b = x.shape[0] // r
        beta = state.tempered.beta.view(r, b)
        if base.energy is None:
            with torch.no_grad():
                raw = energy(x).detach().view(r, b)
        else:
            raw = (base.energy / state.tempered.beta).view(r, b)
        parity = state.n_swaps % 2
        state.n_swaps += 1
        lo = torch.arange(parity, r - 1, 2, device=x.device)
        attempted = torch.zeros(r - 1, dtype=torch.bool, device=x.device)
        attempted[lo] = True
        log_a = (beta[lo] - beta[lo + 1]) * (raw[lo] - raw[lo + 1])
        u = torch.rand(log_a.shape, generator=gen, dtype=x.dtype, device=x.device)
        accept = u.log() < log_a
        # src[r, b]: the temperature slot whose position slot r of chain b receives.
        src = torch.arange(r, device=x.device).unsqueeze(1).expand(r, b).clone()
        src[lo] = torch.where(accept, lo.unsqueeze(1) + 1, lo.unsqueeze(1))
        src[lo + 1] = torch.where(accept, lo.unsqueeze(1), lo.unsqueeze(1) + 1)
        col = torch.arange(b, device=x.device).unsqueeze(0)
        new_x = x.reshape(r, b, *x.shape[1:])[src, col].reshape(x.shape)
        ratio = beta / beta[src, col]  # rescales the tempered energy and gradient
        new_e = None if base.energy is None else (raw[src, col] * beta).reshape(-1)
        grad = getattr(base, "grad", None)
        new_g = None
        if grad is not None:
            g = grad.reshape(r, b, *grad.shape[1:])[src, col]
            new_g = (g * ratio.view(r, b, *([1] * (g.ndim - 2)))).reshape(grad.shape)
        # Write in place: base samplers may keep these tensors as their working buffers.
        x.copy_(new_x)
        if new_e is not None:
            base.energy.copy_(new_e)
        if new_g is not None:
            grad.copy_(new_g)
        prob = torch.zeros(r - 1, b, dtype=x.dtype, device=x.device)
        prob[lo] = log_a.clamp(max=0.0).exp()
        state.swap_accept_sum[lo] += prob[lo].sum(1)
        state.swap_attempts[lo] += b
        return prob, attempted

    def adapt(self, state: PTState, info: dict[str, Any], iteration: int,
              n_adapt: int) -> PTState:
        """Let the base sampler adapt on all replicas; restart the swap counts after burn-in.

        Args:
            state: The state after burn-in step ``iteration``.
            info: That step's info.
            iteration: Burn-in step index, from 0.
            n_adapt: Number of burn-in steps.
        """
        state.base_state = self.base.adapt(state.base_state, state.base_info, iteration,
                                           n_adapt)
        if iteration == n_adapt - 1:
            state.swap_accept_sum.zero_()
            state.swap_attempts.zero_()
        return self._expose(state)

    def final_diagnostics(self, state: PTState) -> dict[str, Any]:
        """Report the swap acceptance per neighbouring pair and the base's diagnostics.

        Args:
            state: The final state.
        """
        rate = state.swap_accept_sum / state.swap_attempts.clamp(min=1)
        rate = torch.where(state.swap_attempts > 0, rate, math.nan)
        return {"swap_acceptance": rate,
                "temperatures": torch.tensor(self.temperatures, dtype=state.x.dtype),
                "replica_diagnostics": self.base.final_diagnostics(state.base_state)}

    def state_dict(self) -> dict[str, Any]:
        """Return the ladder, the swap period and the base sampler's state dict."""
        return {"temperatures": list(self.temperatures), "swap_every": self.swap_every,
                "base": self.base.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (validated as in the constructor).

        Args:
            state: What :meth:`state_dict` returned.
        """
        self.temperatures = check_temperatures(state["temperatures"])
        self.swap_every = check_int("swap_every", state["swap_every"], minimum=1)
        self.base.load_state_dict(state["base"])
