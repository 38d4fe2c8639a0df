"""The CPU kernel source: ``prange`` over blocks of chains, each chain running its whole loop.

:func:`ebmcore_samplers.kernels.factory.cpu_kernel` compiles :func:`run_chains` with
``numba.njit(parallel=True)`` after rebinding its globals ``D`` (event size) and ``chain``
(a compiled ``bodies.<method>_chain``).
"""

from __future__ import annotations

import numpy as np
from numba import prange

D = 1
#: Chains per ``prange`` iteration: they share one set of scratch arrays.
BLOCK = 64


def chain(*args):  # pragma: no cover - bound per kernel by the factory
    """Bound per kernel to the compiled chain function (never called unbound)."""
    raise NotImplementedError


def run_chains(X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed, n_burn,
               n_steps, thin, plan, opts, minv, msqrt):
    """Run every chain of ``X`` (arguments as in :mod:`.bodies`), blocks of chains in parallel.

    (``plan``, not ``sched``: numba's parfor lowering names an internal argument ``sched``.)
    """
    n = X.shape[0]
    for block in prange((n + BLOCK - 1) // BLOCK):
        # Per-block scratch: a heap allocation per chain costs as much as a few chain-steps
        # of a cheap energy (measured ~20 ns per step over a 10-step run). float64 whatever
        # the chains' dtype (see bodies: float32 chains are only stored in float32).
        x = np.empty(D, np.float64)
        g = np.empty(D, np.float64)
        y = np.empty(D, np.float64)
        gy = np.empty(D, np.float64)
        w = np.empty(D, np.float64)
        st = np.empty(2, np.uint64)
        for i in range(block * BLOCK, min(n, (block + 1) * BLOCK)):
            chain(i, X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed,
                  n_burn, n_steps, thin, plan, opts, minv, msqrt, x, g, y, gy, w, st)
