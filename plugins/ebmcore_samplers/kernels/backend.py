"""The fused backends as strategies: ``numba`` (CPU) and ``cuda`` (numba.cuda).

A sampler with a fused kernel declares it by implementing :class:`FusedKernelSampler`
(``_fused_params`` and ``fused_refusal``); these backend objects, registered through the
``ebmcore_backends`` hook, say whether a case can run fused (:meth:`FusedBackend.supports`),
run it in one kernel call and hand the raw arrays back to :meth:`ebmcore.Sampler.sample`,
which builds the diagnostics.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler
from ebmcore.sampling import Backend, RawRun, Reason, RunSpec

from .dispatch import fused_reasons, get_face, measured_choice, run_fused


@runtime_checkable
class FusedKernelSampler(Protocol):
    """What a sampler implements to run on the fused backends."""

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """Return ``(method, params)``: the kernel to run and the sampler's settings (see
        :func:`ebmcore_samplers.kernels.dispatch.run_fused` for the keys per method)."""

    def fused_refusal(self) -> str | None:
        """Return why the sampler's current settings cannot run fused, or ``None``."""


class FusedBackend(Backend):
    """The whole chain loop in one fused kernel call, on the device's target."""

    #: The device type whose tensors this backend runs.
    device_type: ClassVar[str] = "cpu"
    rule_priority: ClassVar[int] = 10

    def supports(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                 run: RunSpec) -> Reason:
        """``None`` when the sampler has a kernel, the energy a numba face for it, and the
        chains fit this backend (dtype, device, no grad); else why not."""
        if not isinstance(sampler, FusedKernelSampler):
            return f"{type(sampler).__name__} has no fused kernel"
        refusal = sampler.fused_refusal()
        if refusal is not None:
            return refusal
        if run.on_keep is not None:
            return "its kernel runs the whole loop in one call and cannot call on_keep"
        method, params = _run_params(sampler, run)
        return _pooling_reason(sampler, run, params) or fused_reasons(
            method, energy, x, params)[self.name]

    def rule_picks(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                   run: RunSpec) -> bool:
        """What the hand-fitted rule (:func:`~.dispatch.measured_choice`) picks."""
        face, _ = get_face(energy)
        return (face is not None and x.device.type == self.device_type
                and measured_choice(face, x.shape[0], x.dtype, x.device.type) == self.name)

    def rule_reason(self, sampler: Sampler, energy: Energy, x: torch.Tensor) -> str:
        """Say which face cost, dimension and batch the rule weighed."""
        face, _ = get_face(energy)
        cost = "?" if face is None else face.cost
        return (f"{self.name} for a face of cost {cost} in {face.dim if face else '?'}-D, "
                f"{x.shape[0]} {str(x.dtype)[6:]} chains")

    def case_key(self, sampler: Sampler, energy: Energy, x: torch.Tensor) -> tuple[Any, ...]:
        """The face's cost and density (what sets a fused step's cost besides D)."""
        face, _ = get_face(energy)
        return () if face is None else (int(face.cost), bool(face.dense))

    def run(self, sampler: Sampler, energy: Energy, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        """Run the kernel; build a torch state to continue from where the chains are finite."""
        import numba.core.errors

        from .dispatch import check_backend

        if not isinstance(sampler, FusedKernelSampler):
            raise BackendUnavailableError(f"{type(sampler).__name__} has no fused kernel")
        method, params = _run_params(sampler, run)
        pooling = _pooling_reason(sampler, run, params)
        if pooling is not None:
            raise BackendUnavailableError(f"backend={self.name!r} cannot run here: {pooling}")
        face = check_backend(method, self.name, energy, x0, params)
        try:
            samples, trajectory, acceptance, extra = run_fused(
                method, self.name, face, x0, n_steps=run.n_steps, burn_in=run.burn_in,
                thin=run.thin, params=params, generator=generator,
                return_trajectory=run.return_trajectory,
                trace_points=sampler.max_trace_evaluations, trace_stride=run.trace_stride)
        except numba.core.errors.NumbaError as exc:
            raise BackendUnavailableError(
                f"the numba face of {type(energy).__name__} failed to compile for "
                f"backend={self.name!r} (its functions must use only math, loops and "
                f"indexing over x and p): {exc}. backend='torch' works for every energy."
            ) from exc
        # A torch state to continue from (one batched energy-and-gradient evaluation);
        # init refuses non-finite points, so a run with blown-up chains returns none.
        state = None
        nonfinite = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
        nonfinite[extra["nonfinite_chains"]] = True
        if extra["nonfinite_chains"].numel() == 0:
            state = sampler.init(energy, samples)
            state.t = run.n_total  # the schedules' clock, as if torch had run the steps
            if params.get("adapt_step_size") and run.burn_in > 0:
                state.step_size = extra["step_size"]
        out = {"kernel_seed": extra["seed"]}
        if method != "langevin":
            out["step_size"] = extra["step_size"]
        return RawRun(samples=samples, state=state, trajectory=trajectory,
                      energy_trace=extra["energy_trace"],
                      energy_trace_steps=extra["energy_trace_steps"], nonfinite=nonfinite,
                      acceptance=acceptance, divergences=extra.get("divergences"), extra=out)


def _run_params(sampler: Any, run: RunSpec) -> tuple[str, dict[str, Any]]:
    """The sampler's kernel settings for this run: mass adaptation acts during burn-in only,
    so a run without burn-in drops it (and may run fused)."""
    method, params = sampler._fused_params()
    if run.burn_in == 0 and params.get("adapt_mass") is not None:
        params = {**params, "adapt_mass": None}
    return method, params


def _pooling_reason(sampler: Any, run: RunSpec, params: dict[str, Any]) -> str | None:
    """Why a burn-in that pools the chains' acceptances cannot run fused, or ``None``.

    The built-in samplers adapt one step size per group of chains from their pooled
    acceptance (``step_size_groups``), which a kernel that runs each chain's whole loop on
    its own cannot do; its per-chain dual averaging would tune another step size.
    """
    if run.burn_in == 0 or not params.get("adapt_step_size"):
        return None
    if getattr(sampler, "step_size_groups", 0) < 1:
        return None
    return ("step-size adaptation pools the acceptance of all chains at every burn-in step, "
            "which a per-chain fused kernel cannot do; pass adapt_step_size=False (or "
            "burn_in=0) to use a fused backend")


class NumbaBackend(FusedBackend):
    """``backend="numba"``: a fused kernel over CPU tensors (``prange`` over chains)."""

    name: ClassVar[str] = "numba"
    device_type: ClassVar[str] = "cpu"


class CudaBackend(FusedBackend):
    """``backend="cuda"``: a numba.cuda kernel over CUDA tensors (one thread per chain)."""

    name: ClassVar[str] = "cuda"
    device_type: ClassVar[str] = "cuda"

    def timeable(self, x: torch.Tensor) -> bool:
        """Timed on CUDA tensors only (CPU tensors reach it through numba's CUDA simulator,
        which runs each thread in Python: for tests, never worth a trial)."""
        return x.device.type == "cuda"
