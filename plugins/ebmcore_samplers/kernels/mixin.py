"""The glue between :class:`ebmcore.Sampler` and the fused kernels.

A sampler with a kernel inherits :class:`FusedBackendMixin` (before ``Sampler``) and
implements ``_fused_params() -> (method, params)``; the mixin then provides the three hooks
``Sampler`` consults: ``_backends_for``, ``_auto_backend`` and ``_run_backend``.
"""

from __future__ import annotations

from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import SampleResult

from .dispatch import auto_backend, check_backend, fused_reasons, run_fused


class FusedBackendMixin:
    """Gives a sampler the ``numba`` and ``cuda`` backends through the fused kernels.

    The sampler implements :meth:`_fused_params`; every other method here is a hook that
    :class:`ebmcore.Sampler` calls.
    """

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """Return ``(method, params)``: the kernel to run and the sampler's settings.

        See :func:`ebmcore_samplers.kernels.dispatch.run_fused` for the keys per method.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _fused_params()")

    def _backends_for(self, energy: Energy, x: torch.Tensor) -> dict[str, str | None]:
        """Map each backend to ``None`` when it can serve, else to the reason it cannot."""
        method, params = self._fused_params()
        return {"torch": None, **fused_reasons(method, energy, x, params)}

    def _auto_backend(self, energy: Energy, x: torch.Tensor) -> str:
        """Return the measured-fastest backend that can run (see ``dispatch.auto_backend``)."""
        method, params = self._fused_params()
        return auto_backend(method, energy, x, params)

    def _run_backend(self, backend: str, energy: Energy, x0: torch.Tensor, n_steps: int,
                     burn_in: int, thin: int, generator: torch.Generator | None,
                     return_trajectory: bool, trace_stride: int = 1) -> SampleResult:
        """Run the whole chain loop in one fused kernel and package a :class:`SampleResult`.

        With ``return_trajectory``, the kernel records chains ``0, s, 2s, ...`` only
        (``s = trace_stride``, see :meth:`ebmcore.Sampler.sample`'s ``trace_chains``).
        """
        import numba.core.errors

        method, params = self._fused_params()
        face = check_backend(method, backend, energy, x0, params)
        if generator is None:
            generator = torch.Generator(device=x0.device)
            generator.seed()
        try:
            samples, trajectory, acceptance, extra = run_fused(
                method, backend, face, x0, n_steps=n_steps, burn_in=burn_in, thin=thin,
                params=params, generator=generator, return_trajectory=return_trajectory,
                trace_points=getattr(self, "max_trace_evaluations", 10),
                trace_stride=trace_stride)
        except numba.core.errors.NumbaError as exc:
            raise BackendUnavailableError(
                f"the numba face of {type(energy).__name__} failed to compile for "
                f"backend={backend!r} (its functions must use only math, loops and indexing "
                f"over x and p): {exc}. backend='torch' works for every energy.") from exc
        # A torch state to continue from (one batched energy-and-gradient evaluation);
        # init refuses non-finite points, so a run with blown-up chains returns none.
        state = None
        if extra["nonfinite_chains"].numel() == 0:
            state = self.init(energy, samples)  # type: ignore[attr-defined]
            if hasattr(state, "t"):
                state.t = burn_in + n_steps
            adapted = bool(params.get("adapt_step_size")) and burn_in > 0
            if adapted and hasattr(state, "step_size"):
                state.step_size = extra["step_size"]
        diagnostics: dict[str, Any] = {
            "backend": backend,
            "energy_trace": extra["energy_trace"],
            "energy_trace_steps": extra["energy_trace_steps"],
            "nonfinite_chains": extra["nonfinite_chains"],
            "n_steps": n_steps, "burn_in": burn_in, "thin": thin,
            "kernel_seed": extra["seed"],
        }
        if acceptance is not None:
            diagnostics["acceptance"] = acceptance
        if "divergences" in extra:
            diagnostics["divergences"] = extra["divergences"]
        if state is not None:
            diagnostics.update(self.final_diagnostics(state))  # type: ignore[attr-defined]
        if method != "langevin":
            diagnostics["step_size"] = extra["step_size"]
        return SampleResult(samples=samples, trajectory=trajectory, diagnostics=diagnostics,
                            state=state)
