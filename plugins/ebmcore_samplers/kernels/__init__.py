"""Fused chain kernels: the whole sampling loop in one numba (CPU) or numba.cuda (GPU) call.

Modules, one job each:

- :mod:`.rng`: per-chain xoroshiro128+ streams, one source for both targets.
- :mod:`.bodies`: one chain's whole loop per method (Langevin, MALA, HMC).
- :mod:`.cpu`, :mod:`.cuda`: the kernel sources (``prange`` over chains / one thread per
  chain) and the CUDA launcher.
- :mod:`.factory`: compiles and memoises kernels per (method, face, D, dtype).
- :mod:`.dispatch`: backend support checks, seeding, :func:`run_fused`, the ``auto`` rule.
- :mod:`.backend`: :class:`NumbaBackend` and :class:`CudaBackend`, the strategy objects
  the plugin registers, and :class:`FusedKernelSampler`, what a sampler implements.

Importing this package compiles nothing and does not import ``numba.cuda``.
"""

from __future__ import annotations

from typing import Any

from .backend import CudaBackend, FusedBackend, FusedKernelSampler, NumbaBackend
from .dispatch import auto_backend, fused_reasons, run_fused

__all__ = ["CudaBackend", "FusedBackend", "FusedKernelSampler", "NumbaBackend",
           "auto_backend", "fused_reasons", "run_fused"]


def __getattr__(name: str) -> Any:
    if name == "FusedBackendMixin":  # deprecated; the mixin module warns
        from . import mixin

        return mixin.FusedBackendMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
