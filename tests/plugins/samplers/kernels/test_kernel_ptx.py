"""Every CUDA kernel compiles to PTX: numba's CUDA typing and NVVM, which the simulator skips.

Needs the NVVM library (``pip install "numba-cuda[cu12]>=0.30.4,<0.31"``); skipped with that
reason when it is missing. No GPU is needed: numba compiles device functions for the current
device's compute capability, so the test stands in a device that reports one.
"""

from __future__ import annotations

from unittest import mock

import pytest
from ebmcore_samplers.kernels import factory
from kernel_helpers import gaussian2

import ebmcore


def _nvvm_reason() -> str | None:
    try:
        from numba.cuda.cudadrv import nvvm

        if nvvm.is_available():
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means no PTX compiler
        return f"numba.cuda's NVVM is unusable ({exc})"
    return ('NVVM library not installed: pip install "numba-cuda[cu12]>=0.30.4,<0.31"')


NVVM_MISSING = _nvvm_reason()


class _Device:
    """Stands in for ``get_current_device()`` when compiling device functions without a GPU."""

    compute_capability = (8, 0)


@pytest.fixture
def no_gpu_device():
    from numba.cuda import dispatcher

    with mock.patch.object(dispatcher, "get_current_device", lambda: _Device()):
        yield


@pytest.mark.skipif(NVVM_MISSING is not None, reason=str(NVVM_MISSING))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_every_cuda_kernel_compiles_to_ptx(method: str, dtype: str, no_gpu_device) -> None:
    # The mixture face: the most demanding built-in one (exp, log, nested loops, branches).
    means = [[0.0, 0.0], [2.0, 1.0], [-1.0, 2.0]]
    face = ebmcore.create("energy", "gaussian_mixture", means=means).numba_face()
    ptx = factory.compile_cuda_ptx(method, face.grad, face.energy, face.dim, dtype)
    assert ".entry" in ptx and "run_chains" in ptx
    # The event size is a compile-time constant: the per-chain arrays need no heap.
    assert "malloc" not in ptx


@pytest.mark.skipif(NVVM_MISSING is not None, reason=str(NVVM_MISSING))
def test_gradient_only_langevin_kernel_compiles_to_ptx(no_gpu_device) -> None:
    face = gaussian2().numba_face()
    ptx = factory.compile_cuda_ptx("langevin", face.grad, None, face.dim, "float64")
    assert ".entry" in ptx
