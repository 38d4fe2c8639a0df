"""Fused chain kernels: the whole sampling loop in one numba (CPU) or numba.cuda (GPU) call.

Modules, one job each:

- :mod:`.rng`: per-chain xoroshiro128+ streams, one source for both targets.
- :mod:`.bodies`: one chain's whole loop per method (Langevin, MALA, HMC).
- :mod:`.cpu`, :mod:`.cuda`: the kernel sources (``prange`` over chains / one thread per
  chain) and the CUDA launcher.
- :mod:`.factory`: compiles and memoises kernels per (method, face, D, dtype).
- :mod:`.dispatch`: backend support checks, seeding, :func:`run_fused`, the ``auto`` rule.
- :mod:`.mixin`: :class:`FusedBackendMixin`, the glue into :class:`ebmcore.Sampler`.

Importing this package compiles nothing and does not import ``numba.cuda``.
"""

from __future__ import annotations

from .dispatch import auto_backend, fused_reasons, run_fused
from .mixin import FusedBackendMixin

__all__ = ["FusedBackendMixin", "auto_backend", "fused_reasons", "run_fused"]
