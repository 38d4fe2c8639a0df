"""The memoised kernel factory: one compiled kernel per (method, target, face, D, dtype).

Nothing compiles at import: :func:`cpu_kernel` and :func:`cuda_kernel` build (and numba
compiles lazily on the first call) a kernel the first time a combination is asked for, then
return the same object. The key holds the face's two Python functions themselves (not the
parameters, which travel as an array), so two energies of one kind share kernels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import bodies, rng
from .rng import rebind

METHODS: tuple[str, ...] = ("langevin", "mala", "hmc")
DTYPES: dict[str, Any] = {"float32": np.float32, "float64": np.float64}

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.RLock()


def _no_energy(x, p):
    """Stand-in when a face has no energy (Langevin only); the kernels never call it."""
    return 0.0


def _memo(key: tuple, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def cache_size() -> int:
    """Return the number of memoised objects (compiled helpers, chain functions, kernels)."""
    return len(_CACHE)


def _check(method: str, dtype: str, dim: int) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")


#: LLVM fast-math flags for energy faces on the CPU: ``reassoc`` lets a dot product's sum
#: be reordered into SIMD lanes and ``contract`` fuses multiply-adds; without them each
#: addition waits for the previous one (a 100-D dense Gaussian gradient ran 3.2x slower).
#: No ``nnan``/``ninf``: the kernels' divergence checks rely on NaN and inf compares.
FACE_FASTMATH: frozenset[str] = frozenset({"reassoc", "contract"})


def _cpu_jit(fastmath: frozenset[str] = frozenset()) -> Callable[[Callable], Callable]:
    import numba

    return numba.njit(cache=False, error_model="numpy", fastmath=set(fastmath))


def _cuda_jit() -> Callable[[Callable], Callable]:
    from numba import cuda

    return cuda.jit(device=True)


def _target_jit(target: str) -> Callable[[Callable], Callable]:
    return _cpu_jit() if target == "cpu" else _cuda_jit()


def target_rng(target: str) -> Any:
    """Return the RNG functions compiled for ``target`` (``"cpu"`` or ``"cuda"``)."""
    return _memo(("rng", target), lambda: rng.make_rng(_target_jit(target)))


def _face_fn(target: str, fn: Callable) -> Callable:
    # The same face function may serve several kernels: compile it once per target. Only
    # the CPU gets fast-math: numba.cuda's fastmath means approximate division and square
    # roots, not just reordered sums.
    return _memo(("face", target, fn),
                 lambda: (_cpu_jit(FACE_FASTMATH) if target == "cpu" else _cuda_jit())(fn))


def chain_function(method: str, target: str, grad: Callable, energy: Callable | None,
                   dim: int) -> Callable:
    """Return ``bodies.<method>_chain`` compiled for ``target`` with the face bound in.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        target: ``"cpu"`` (``numba.njit``) or ``"cuda"`` (``cuda.jit(device=True)``).
        grad: The face's plain-Python gradient ``grad(x, p, out)``.
        energy: The face's plain-Python energy ``energy(x, p)``, or ``None`` (Langevin).
        dim: The event size ``D``.
    """
    key = ("chain", method, target, grad, energy, dim)

    def build() -> Callable:
        jit = _target_jit(target)
        r = target_rng(target)
        namespace = dict(vars(bodies))
        namespace.update(
            D=dim, HAS_ENERGY=energy is not None,
            grad=_face_fn(target, grad),
            energy=_face_fn(target, energy if energy is not None else _no_energy),
            seed_chain=r.seed_chain, fill_normal=r.fill_normal, uniform=r.uniform)
        for helper in bodies.HELPERS:
            namespace[helper.__name__] = jit(rebind(helper, namespace))
        return jit(rebind(bodies.CHAINS[method], namespace))

    return _memo(key, build)


def _target_kernel(target: str, method: str, grad: Callable, energy: Callable | None,
                   dim: int, dtype: str) -> Any:
    """Compile ``run_chains`` of the target's kernel module around this chain function.

    The CPU and CUDA sources differ only in how they spread chains over threads, so one
    builder serves both: rebind the module's ``D`` and ``chain`` (and ``cuda`` on the GPU)
    and compile with the target's kernel decorator.
    """
    _check(method, dtype, dim)

    def build() -> Any:
        if target == "cpu":
            import numba

            from . import cpu as source

            jit = numba.njit(parallel=True, cache=False, error_model="numpy")
            extra: dict[str, Any] = {}
        else:
            from numba import cuda

            from . import cuda as source

            jit, extra = cuda.jit, {"cuda": cuda}
        namespace = dict(vars(source))
        namespace.update(D=dim, chain=chain_function(method, target, grad, energy, dim),
                         **extra)
        return jit(rebind(source.run_chains, namespace))

    return _memo((f"{target}_kernel", method, grad, energy, dim, dtype), build)


def cpu_kernel(method: str, grad: Callable, energy: Callable | None, dim: int,
               dtype: str) -> Callable:
    """Return the parallel CPU kernel (``prange`` over blocks of chains) for this combination.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        grad: The face's gradient function.
        energy: The face's energy function (``None`` only for Langevin).
        dim: The event size ``D``.
        dtype: ``"float32"`` or ``"float64"``, the chains' dtype.
    """
    return _target_kernel("cpu", method, grad, energy, dim, dtype)


def cuda_kernel(method: str, grad: Callable, energy: Callable | None, dim: int,
                dtype: str) -> Any:
    """Return the CUDA kernel (one thread per chain) for this combination.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        grad: The face's gradient function.
        energy: The face's energy function (``None`` only for Langevin).
        dim: The event size ``D``.
        dtype: ``"float32"`` or ``"float64"``, the chains' dtype.
    """
    return _target_kernel("cuda", method, grad, energy, dim, dtype)


def cuda_signature(dtype: str) -> tuple:
    """Return the numba argument types of a CUDA kernel over C-contiguous arrays.

    Used to compile the kernels to PTX without a GPU (:func:`compile_cuda_ptx`).
    """
    import numba
    from numba import types

    f = numba.from_dtype(np.dtype(DTYPES[dtype]))
    f64, i64 = types.float64, types.int64
    return (f[:, ::1], f[:, :, ::1], i64, i64[::1], f[:, ::1], f[::1], f64[::1], i64[::1],
            f64[::1], f64[::1], types.uint64, i64, i64, i64, f64[:, ::1], f64[::1],
            f64[::1], f64[::1])


def compile_cuda_ptx(method: str, grad: Callable, energy: Callable | None, dim: int,
                     dtype: str, cc: tuple[int, int] = (8, 0)) -> str:
    """Compile the CUDA kernel of this combination to PTX for compute capability ``cc``.

    The simulator checks no types; this runs numba's full CUDA type inference and NVVM, so
    what would fail on a GPU fails here. Needs the NVVM library (``numba-cuda[cu12]``).

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        grad: The face's gradient function.
        energy: The face's energy function (``None`` only for Langevin).
        dim: The event size ``D``.
        dtype: ``"float32"`` or ``"float64"``.
        cc: The compute capability to target.

    Returns:
        The PTX source.
    """
    from numba import cuda

    kernel = cuda_kernel(method, grad, energy, dim, dtype)
    ptx, _ = cuda.compile_ptx(kernel.py_func, cuda_signature(dtype), cc=cc)
    return ptx
