"""The CUDA kernel source and its launcher: one thread per chain, state in local memory.

:func:`ebmcore_samplers.kernels.factory.cuda_kernel` compiles :func:`run_chains` with
``numba.cuda.jit`` after rebinding its globals ``D`` (event size, a compile-time constant
as ``cuda.local.array`` needs), ``chain`` (a compiled ``bodies.<method>_chain``) and
``cuda``. Per-chain state is float64 whatever the chains' dtype, as on the CPU. This module
imports no ``numba.cuda`` at import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

D = 1
cuda: Any = None  # numba.cuda, bound by the factory
THREADS_PER_BLOCK = 128
#: The simulator runs every thread of a block as a Python thread, and threads contending for
#: the GIL made runs of one test take 13 s to 100 s (8 per block: still 13-50 s). One thread
#: per block keeps it at 13 s; each thread is an independent chain, so no result changes
#: (a test sets 4 to cover the bounds guard of idle threads).
SIMULATOR_THREADS_PER_BLOCK = 1


def chain(*args):  # pragma: no cover - bound per kernel by the factory
    """Bound per kernel to the compiled chain function (never called unbound)."""
    raise NotImplementedError


def run_chains(X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed, n_burn,
               n_steps, thin, plan, opts, minv, msqrt):
    """Run chain ``cuda.grid(1)`` of ``X`` (arguments as in :mod:`.bodies`)."""
    i = cuda.grid(1)
    if i < X.shape[0]:
        x = cuda.local.array(D, np.float64)
        g = cuda.local.array(D, np.float64)
        y = cuda.local.array(D, np.float64)
        gy = cuda.local.array(D, np.float64)
        w = cuda.local.array(D, np.float64)
        st = cuda.local.array(2, np.uint64)
        chain(i, X, traj, record, trace_at, trace_e, e_out, acc, div, step_out, p, seed,
              n_burn, n_steps, thin, plan, opts, minv, msqrt, x, g, y, gy, w, st)


def simulated() -> bool:
    """Whether numba runs CUDA kernels in its simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def launch(kernel: Any, args: list[Any], n_chains: int) -> None:
    """Launch ``kernel`` over ``n_chains`` threads on torch's current stream.

    On a GPU every torch tensor in ``args`` goes in through ``cuda.as_cuda_array`` (zero
    copy; ``sync=False`` because the kernel runs on torch's current stream, which already
    orders it after the work that produced the tensors and before the work that follows).

    Under the simulator there is no CUDA memory: the tensors are CPU tensors and go in as
    numpy views of the same memory (the simulator copies them in and writes them back).
    That is the one place where the simulator path and the GPU path differ.

    Args:
        kernel: A kernel from :func:`ebmcore_samplers.kernels.factory.cuda_kernel`.
        args: The kernel's arguments in order: torch tensors and scalars.
        n_chains: Number of chains (one thread each).
    """
    import torch
    from numba import cuda as nb_cuda

    if simulated():
        host = [a.numpy() if isinstance(a, torch.Tensor) else a for a in args]
        per_block = SIMULATOR_THREADS_PER_BLOCK
        kernel[(n_chains + per_block - 1) // per_block, per_block](*host)
        return
    blocks = (n_chains + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    dev_args = [nb_cuda.as_cuda_array(a, sync=False) if isinstance(a, torch.Tensor) else a
                for a in args]
    with nb_cuda.gpus[device.index if device.index is not None else 0]:
        stream = nb_cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        kernel[blocks, THREADS_PER_BLOCK, stream](*dev_args)
