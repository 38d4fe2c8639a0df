"""The ``torch`` backend: the sampler's own ``init`` / ``step`` / ``adapt``, step by step.

It runs every sampler on every energy and device, and it is the floor the other backends
are measured against, so its loop does per step no more than a hand-written one: one step,
in-place tallies, and no host synchronisation except where the progress bar redraws.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from ebmcore.progress import ProgressBar
from ebmcore.sampling.backend import Backend, RawRun, Reason, RunSpec
from ebmcore.sampling.recording import (
    Recorder,
    StopCheck,
    Tallies,
    evenly_spaced,
    nonfinite_rows,
)

if TYPE_CHECKING:
    from ebmcore.energy import Energy
    from ebmcore.sampler import Sampler


class TorchBackend(Backend):
    """Run the sampler's ``step`` in a Python loop: every sampler, energy and device.

    Args:
        progress: Show a progress bar on a terminal.
    """

    name: ClassVar[str] = "torch"
    streams: ClassVar[bool] = True
    stops: ClassVar[bool] = True

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def supports(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                 run: RunSpec) -> Reason:
        """Always ``None``: torch runs every case."""
        return None

    def run(self, sampler: Sampler, energy: Energy, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        """Burn in (adapting), then run the kept steps, feeding a :class:`Recorder`.

        A run's ``time_limit`` and ``should_stop`` are asked after every step (burn-in
        included); when either fires the run ends there with what it has.
        """
        from ebmcore.sampler import SamplerState

        stop = StopCheck(run) if run.stoppable else None
        state = sampler.init(energy, x0.detach().clone())
        # A state declared as SamplerState takes the hint of the steps whose energy is traced.
        hints = isinstance(state, SamplerState)
        bar = ProgressBar(run.n_total, enabled=self.progress, label=type(sampler).__name__)
        tallies = Tallies(sampler.acceptance_key, sampler.divergence_key)
        stopped = False
        for i in range(run.burn_in):
            state, info = sampler.step(energy, state, generator)
            state = sampler.adapt(state, info, i, run.burn_in)
            tallies.warmup(info)
            bar.update()
            if stop is not None and stop():
                stopped = True
                break
        recorder = Recorder(run, x0)
        # Samplers whose state carries no energy (ULA with a closed-form gradient) get it
        # evaluated at a few evenly spaced kept steps only, so the trace costs next to nothing.
        n_kept = run.n_kept
        n_evals = min(sampler.max_trace_evaluations, max(2, n_kept // sampler.trace_spacing))
        evaluate_at = set(evenly_spaced(n_kept, n_evals))
        # One fused op per step flags non-finite energies: 0 * inf and 0 * nan are nan, so
        # the accumulator turns nan for a chain once its energy was non-finite, and stays so.
        poison = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        for i in range(0 if stopped else run.n_steps):
            keep = recorder.keeps(i)
            if hints:
                state.need_energy = keep and recorder.kept in evaluate_at
            state, info = sampler.step(energy, state, generator)
            e = state.energy
            if e is not None:
                poison.add_(e, alpha=0.0)
            tallies.kept(info)
            if keep:
                if e is None and recorder.kept in evaluate_at:
                    with torch.no_grad():
                        e = energy(state.x).detach()
                    poison.add_(e, alpha=0.0)
                recorder.keep(i, state.x, energy_mean=None if e is None else e.mean())
            # reading the acceptance syncs with the device, so only when the bar redraws
            extra = (f"acceptance {float(tallies.accept.mean()) / (i + 1):.3f}"
                     if tallies.accept is not None and bar.due() else None)
            bar.update(extra=extra)
            if stop is not None and stop():
                stopped = True
                break
        bar.close()
        # Non-finite positions are absorbing for the unadjusted kernels, so a final check
        # also catches chains that blew up between the recorded steps.
        if state.energy is not None:
            poison.add_(state.energy, alpha=0.0)
        nonfinite = nonfinite_rows(state.x)
        if not bool(torch.isfinite(poison.sum())):  # one cheap reduction in the common case
            nonfinite |= torch.isnan(poison)
        trace, trace_steps = recorder.trace()
        trajectory = recorder.trajectory
        if stopped and trajectory is not None:
            trajectory = trajectory[:recorder.kept]
        return RawRun(samples=state.x.clone(), state=state, trajectory=trajectory,
                      energy_trace=trace, energy_trace_steps=trace_steps, nonfinite=nonfinite,
                      acceptance=tallies.acceptance(), divergences=tallies.divergent,
                      n_grad_warmup=tallies.n_grad_warmup,
                      n_grad_sampling=tallies.n_grad_sampling,
                      tree_depth=tallies.mean_tree_depth(),
                      n_steps_done=(tallies.burn_in_done + tallies.steps_done) if stopped
                      else None,
                      stopped_early=stop.reason if stopped and stop is not None else None)
