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
from ebmcore.sampling.recording import Recorder, evenly_spaced, nonfinite_rows

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

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def supports(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                 run: RunSpec) -> Reason:
        """Always ``None``: torch runs every case."""
        return None

    def run(self, sampler: Sampler, energy: Energy, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        """Burn in (adapting), then run the kept steps, feeding a :class:`Recorder`."""
        from ebmcore.sampler import SamplerState

        state = sampler.init(energy, x0.detach().clone())
        # A state declared as SamplerState takes the hint of the steps whose energy is traced.
        hints = isinstance(state, SamplerState)
        bar = ProgressBar(run.n_total, enabled=self.progress, label=type(sampler).__name__)
        for i in range(run.burn_in):
            state, info = sampler.step(energy, state, generator)
            state = sampler.adapt(state, info, i, run.burn_in)
            bar.update()
        recorder = Recorder(run, x0)
        # Samplers whose state carries no energy (ULA with a closed-form gradient) get it
        # evaluated at a few evenly spaced kept steps only, so the trace costs next to nothing.
        n_kept = run.n_kept
        n_evals = min(sampler.max_trace_evaluations, max(2, n_kept // sampler.trace_spacing))
        evaluate_at = set(evenly_spaced(n_kept, n_evals))
        # One fused op per step flags non-finite energies: 0 * inf and 0 * nan are nan, so
        # the accumulator turns nan for a chain once its energy was non-finite, and stays so.
        poison = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        accept_key, divergence_key = sampler.acceptance_key, sampler.divergence_key
        accept_sum = divergent_sum = None
        for i in range(run.n_steps):
            keep = recorder.keeps(i)
            if hints:
                state.need_energy = keep and recorder.kept in evaluate_at
            state, info = sampler.step(energy, state, generator)
            e = state.energy
            if e is not None:
                poison.add_(e, alpha=0.0)
            if accept_key is not None and accept_key in info:
                a = info[accept_key]
                accept_sum = a.clone() if accept_sum is None else accept_sum.add_(a)
            if divergence_key is not None and divergence_key in info:
                d = info[divergence_key]
                divergent_sum = d.long() if divergent_sum is None else divergent_sum.add_(d)
            if keep:
                if e is None and recorder.kept in evaluate_at:
                    with torch.no_grad():
                        e = energy(state.x).detach()
                    poison.add_(e, alpha=0.0)
                recorder.keep(i, state.x, energy_mean=None if e is None else e.mean())
            # reading the acceptance syncs with the device, so only when the bar redraws
            extra = (f"acceptance {float(accept_sum.mean()) / (i + 1):.3f}"
                     if accept_sum is not None and bar.due() else None)
            bar.update(extra=extra)
        bar.close()
        # Non-finite positions are absorbing for the unadjusted kernels, so a final check
        # also catches chains that blew up between the recorded steps.
        if state.energy is not None:
            poison.add_(state.energy, alpha=0.0)
        nonfinite = nonfinite_rows(state.x)
        if not bool(torch.isfinite(poison.sum())):  # one cheap reduction in the common case
            nonfinite |= torch.isnan(poison)
        trace, trace_steps = recorder.trace()
        return RawRun(samples=state.x.clone(), state=state, trajectory=recorder.trajectory,
                      energy_trace=trace, energy_trace_steps=trace_steps, nonfinite=nonfinite,
                      acceptance=None if accept_sum is None else accept_sum / run.n_steps,
                      divergences=divergent_sum)
