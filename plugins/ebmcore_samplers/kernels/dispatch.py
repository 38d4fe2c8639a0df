"""Which fused backend can run, running it, and the measured ``auto`` rule.

- :func:`fused_reasons` says, per fused backend, ``None`` (it can run) or why not.
- :func:`run_fused` runs a whole sampling run in one fused kernel call.
- :func:`auto_backend` picks ``"torch"``, ``"numba"`` or ``"cuda"`` from measurements.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ebmcore.energy import Energy, NumbaFace
from ebmcore.errors import BackendUnavailableError

from .factory import METHODS

FUSED_BACKENDS: tuple[str, ...] = ("numba", "cuda")
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}
_NEEDS_ENERGY = ("mala", "hmc")
#: HMC's divergence threshold on the energy error (matches ``ebmcore_samplers.hmc``).
DIVERGENCE_THRESHOLD = 1000.0

_PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "langevin": {"step_size": None, "noise_scale": 1.0, "grad_clip": None, "clamp": None},
    "mala": {"step_size": None, "adapt_step_size": False, "target_accept": 0.574,
             "adapt_mass": None},
    "hmc": {"step_size": None, "n_leapfrog": 10, "mass": None, "jitter": 0.0,
            "adapt_step_size": False, "adapt_mass": None, "target_accept": 0.8},
}


# -- reasons ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def cuda_reason() -> str | None:
    """Return why numba cannot run CUDA kernels on this machine, or ``None`` when it can."""
    try:
        from numba import cuda
    except ModuleNotFoundError as exc:
        return (f"numba.cuda cannot be imported ({exc}); install the CUDA extra, e.g. "
                f"pip install 'ebmcore[cuda12]'")
    except Exception as exc:  # noqa: BLE001 - any import failure means no CUDA backend
        return cuda_toolchain_message(exc)
    try:
        available = bool(cuda.is_available())
    except Exception as exc:  # noqa: BLE001 - a broken driver must not break the host
        return f"numba.cuda found no usable GPU ({exc})"
    if not available:
        return "numba.cuda found no CUDA GPU or driver on this machine"
    return None


@contextlib.contextmanager
def cuda_toolchain() -> Iterator[None]:
    """Turn an import or attribute error of numba-cuda inside the block (it imports and
    compiles lazily) into :class:`BackendUnavailableError` with the cause and the fix."""
    try:
        yield
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailableError(cuda_toolchain_message(exc)) from exc


def cuda_toolchain_message(exc: BaseException) -> str:
    """Say that numba-cuda cannot import or compile, why (``exc``), and the known fix.

    Args:
        exc: The error importing numba-cuda or compiling a kernel with it raised.
    """
    from importlib import metadata

    try:
        version = metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    return (f"the cuda backend cannot import or compile with numba-cuda {version} under "
            f"NumPy {np.__version__}: {type(exc).__name__}: {exc}; with NumPy 2.5 numba-cuda "
            f"0.30.4 fails (np.row_stack is gone) — install numpy<2.5, e.g. "
            f"pip install 'numpy<2.5'. backend='torch' runs CUDA tensors meanwhile.")


def simulated() -> bool:
    """Whether numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def get_face(energy: Energy) -> tuple[NumbaFace | None, str | None]:
    """Return ``(face, None)``, or ``(None, reason)`` when the energy has no numba face.

    Args:
        energy: The energy whose :meth:`~ebmcore.Energy.numba_face` to ask.
    """
    name = type(energy).__name__
    try:
        face = energy.numba_face()
    except Exception as exc:  # noqa: BLE001 - reported as the reason, not raised
        return None, f"{name}.numba_face() failed: {type(exc).__name__}: {exc}"
    if face is None:
        return None, (f"{name} has no numba face (numba_face() returned None; neural and "
                      f"autograd-only energies run on backend='torch')")
    if not isinstance(face, NumbaFace):
        return None, (f"{name}.numba_face() must return ebmcore.NumbaFace or None, got "
                      f"{type(face).__name__}")
    return face, None


def _face_reason(method: str, face: NumbaFace, x: torch.Tensor) -> str | None:
    if not callable(face.grad):
        return "the energy's numba face has no gradient function"
    if method in _NEEDS_ENERGY and not callable(face.energy):
        return (f"{method} needs the energy's numba energy function too (its accept/reject "
                f"step evaluates E), and this face has none; langevin works with a gradient "
                f"alone")
    d = int(np.prod(x.shape[1:]))
    if face.dim != d:
        return (f"the energy's numba face expects points of {face.dim} coordinates but x0 has "
                f"{d} per chain (event shape {tuple(x.shape[1:])})")
    p = face.params
    if p.ndim != 1 or not bool(np.isfinite(p).all()):
        return ("the energy's numba parameters are not representable in the kernels (they "
                "must be one flat array of finite float64 values)")
    return None


def params_reason(method: str, params: dict[str, Any]) -> str | None:
    """Return why the fused kernels cannot follow these sampler settings, or ``None``.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        params: The sampler's settings (see :func:`run_fused`).
    """
    if method in ("mala", "hmc") and "step_size" in params and params["step_size"] is None:
        return (f"{method} with step_size=None finds its step size by a search at the first "
                f"step, which the fused kernels do not run; pass a step_size")
    if method == "hmc":
        mass = params.get("mass")
        if mass is not None and torch.as_tensor(mass).ndim != 1:
            return ("the fused HMC kernels support identity or diagonal mass only, not a "
                    "dense mass matrix")
    if method in ("mala", "hmc") and params.get("adapt_mass"):
        return ("mass adaptation pools positions over all chains at every burn-in step, "
                "which a per-chain fused kernel cannot do; pass adapt_mass=None (or a "
                "fixed mass=...) to use a fused backend")
    return None


def fused_reasons(method: str, energy: Energy, x: torch.Tensor,
                  params: dict[str, Any] | None = None) -> dict[str, str | None]:
    """Map ``"numba"`` and ``"cuda"`` to ``None`` when they can run, else to the reason.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"`` (anything else has no kernel).
        energy: The target energy.
        x: The initial positions ``(B, *event_shape)``.
        params: The sampler's settings (see :func:`run_fused`), checked when given.
    """
    if method not in METHODS:
        why = f"there is no fused kernel for {method!r} (kernels exist for {', '.join(METHODS)})"
        return {"numba": why, "cuda": why}
    face, why = get_face(energy)
    if why is None:
        why = _face_reason(method, face, x)
    if why is None and x.requires_grad:
        why = ("x0 requires grad; the fused kernels write outside autograd, so pass "
               "x0.detach()")
    if why is None and x.dtype not in _DTYPES:
        why = f"x0 has dtype {x.dtype}; the fused kernels run float32 or float64 chains"
    if why is None and params is not None:
        why = params_reason(method, params)
    if why is not None:
        return {"numba": why, "cuda": why}
    numba_why = None if x.device.type == "cpu" else (
        f"x0 is on {x.device}; the numba backend runs CPU tensors (use backend='cuda' for "
        f"CUDA tensors)")
    if x.device.type != "cuda" and not simulated():
        # Said without importing numba.cuda, which CPU-only runs never need.
        cuda_why = (f"x0 is on {x.device}; the cuda backend runs CUDA tensors (move x0 and "
                    f"the generator to the GPU, or use backend='numba' on the CPU)")
    else:
        cuda_why = cuda_reason()
    return {"numba": numba_why, "cuda": cuda_why}


def check_backend(method: str, backend: str, energy: Energy, x: torch.Tensor,
                  params: dict[str, Any] | None = None) -> NumbaFace:
    """Return the face when ``backend`` can run, else raise BackendUnavailableError.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        backend: ``"numba"`` or ``"cuda"``.
        energy: The target energy.
        x: The initial positions.
        params: The sampler's settings, checked when given.
    """
    if backend not in FUSED_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(FUSED_BACKENDS)}, got {backend!r}")
    reasons = fused_reasons(method, energy, x, params)
    if reasons[backend] is not None:
        usable = ["torch"] + [b for b, r in reasons.items() if r is None]
        raise BackendUnavailableError(
            f"backend={backend!r} cannot run here: {reasons[backend]}. Usable backends: "
            f"{', '.join(usable)}.")
    face, _ = get_face(energy)
    return face


# -- the auto rule ---------------------------------------------------------------------------

def face_cost(face: NumbaFace) -> int:
    """Multiply-adds of one gradient evaluation: the face's ``cost`` (by default one per
    packed parameter, which every built-in face but the mixture reads about once per call).

    Args:
        face: The energy's numba face.
    """
    return int(face.cost)


#: A non-dense face costing at least this many multiply-adds per coordinate is "heavy".
HEAVY_COST_PER_DIM = 8
#: Heavy faces in at most this many dimensions stay fused on the CPU whatever the batch.
HEAVY_LOW_DIM = 8
#: Multiply-adds of a face gradient worth one coordinate of torch's per-step work.
COST_PER_COORD = 16
#: float32 on the CPU runs fused while chains x (D + cost / COST_PER_COORD) stays below this.
FUSED_BATCH_WORK = 12_000
#: float64 on the CPU runs a non-dense face fused unless one gradient costs more than this.
FLOAT64_FUSED_COST = 2_000
#: A dense face at least this costly runs on torch for CUDA tensors (estimated, see below).
CUDA_DENSE_COST = 1_000


def auto_backend(method: str, energy: Energy, x: torch.Tensor,
                 params: dict[str, Any] | None = None) -> str:
    """Pick the fastest backend that can run, by a rule fitted to measurements.

    This is ``auto``'s rule for short runs (the fused backends' ``rule_picks``); runs long
    enough to repay a trial are timed on the actual case instead (:mod:`ebmcore.sampling.auto`).

    With ``W`` the face's cost (multiply-adds per gradient, :attr:`ebmcore.NumbaFace.cost`),
    ``D`` the event size and ``n`` the number of chains, the rule is, in order:

    1. nothing fused can run -> ``"torch"``;
    2. a CUDA tensor -> ``"cuda"``, except a dense face (:attr:`ebmcore.NumbaFace.dense`)
       with ``W >= CUDA_DENSE_COST``, which runs ``"torch"``;
    3. a float64 CPU tensor -> ``"numba"`` for a dense face or ``W <= FLOAT64_FUSED_COST``,
       else ``"torch"``;
    4. float32, a heavy non-dense face (``W >= HEAVY_COST_PER_DIM * D``) in at most
       ``HEAVY_LOW_DIM`` dimensions -> ``"numba"``;
    5. float32 -> ``"numba"`` while ``n (D + W / COST_PER_COORD) <= FUSED_BATCH_WORK``,
       else ``"torch"``.

    Why (``python benchmarks/kernels.py --sweep-only --dtype float32 float64``, 2026-12-01,
    this project's 2-core CPU, one torch and one numba thread, heap pinned; 264 cases:
    Langevin, MALA and HMC with 5 leapfrog steps; a 2-D double well and its 10-, 32- and
    100-D versions (``W = 3``), an 8-component mixture in 2, 10 and 32 dimensions
    (``W = 96, 1,760, 16,896``) and dense Gaussians in 2, 10, 32 and 100 dimensions
    (``W ≈ D²``); 100 to 100,000 chains, runs of about 2 million gradient-coordinates; the
    numbers below are fused time / torch time):

    - The fused chain's cost is its gradient (``W``; a dense gradient streams its matrix once
      per chain and step, about 0.3 ns per multiply-add) plus random numbers (about 6 ns per
      coordinate). torch pays a fixed 20-60 µs per step whatever the batch (more for MALA and
      HMC, whose steps take more operations), then little per coordinate in float32, whose
      ``randn`` and matrix products are vectorised: so few chains, or cheap faces, favour the
      fused loop, and many chains of a costly face favour torch (rule 5). Double well,
      float32: 0.10-0.45 at 100 chains in every dimension, 0.58-1.00 at 1,000 chains up to
      10-D, then 1.1-4.2. Dense Gaussians, float32: 0.11-1.19 up to ``n (D + W/16) = 10,000``
      (2-D x 1,000 chains to 32-D x 100), 1.3-3.8 beyond, 100-D from 100 chains: 1.6-2.4.
    - The mixture's torch path computes every component's ``(n, K, D)`` terms with a dozen
      elementwise operations, while the fused face skips components of negligible weight: in
      2-D it is 0.06-0.70 at every batch size (rule 4). In 10-D it is 0.5-0.65 at 100 chains
      and 1.1-2.5 from 1,000; in 32-D torch wins everywhere (2.6-10).
    - torch's float64 is not vectorised as well (its ``randn`` is scalar), so the fused loop
      is faster or level on cheap and dense faces: double well 0.09-0.75 from 10-D, dense
      Gaussians 0.12-1.46 up to 100-D. Mixtures, whose fused gradient does not vectorise
      like a dense product, are level at 10-D (``W = 1,760``: 0.5-1.4) and lose from 20-D
      (``W = 3,360``: 1.1-2.2; 32-D, ``W = 16,896``: 1.4-4.9) (rule 3).
    - A held-out grid (``--held-out``: Rosenbrock in 3 and 20 dimensions, a 4-component
      mixture in 5 and 20, dense Gaussians in 5, 20 and 50; 300, 3,000 and 30,000 chains)
      showed the first version of this rule (``COST_PER_COORD = 32``, float64 fused up to
      ``W = 12,000`` for every face) wrong on the 20-D mixture in float64 (``W = 3,360``:
      1.1-2.2 fused) and the 20-D dense Gaussian at 300 float32 chains (1.5): both
      constants were refitted to the two grids together. With them, ``auto`` is within
      1.25x of the faster backend on 256 of the 264 fitted cases (worst 1.89x) and 125 of
      the 126 held-out ones (worst 1.33x).
    - Cases no rule of this shape gets right: the 2-D float64 double well under HMC at
      10,000 and 100,000 chains (1.3-1.9 fused: the 2-D torch loop is cheap there, while
      Langevin and MALA stay fused-faster), and float64 chains at the crossover (the 10-D
      mixture under MALA at 1,000 chains, dense 50- and 100-D Gaussians under HMC: 1.3-1.46,
      where other batch sizes measure 0.6-1.1).
    - On the GPU (NVIDIA H200, issue #13's measurements): the fused kernel wins by 15-38x on
      2-D double wells and mixtures, from 1,000 to 100 million chains, and loses 15x on a
      100-D dense Gaussian (100,000 chains), where torch runs one tensor-core matrix
      product. The threshold ``CUDA_DENSE_COST`` between them is an estimate (a thread's
      dense product of about a thousand multiply-adds, 32-D), not a fit: refit it with
      ``python benchmarks/kernels.py --sweep-only --device cuda`` (run by
      ``benchmarks/gpu.sh``).

    The rule depends only on the energy, dtype, device and batch shape (never on whether
    a kernel is compiled yet), so the same call always picks the same backend and the
    same seed gives the same bits. The first fused call in a process compiles the kernel
    (a few seconds); ``auto`` ignores that one-off cost.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        energy: The target energy.
        x: The initial positions.
        params: The sampler's settings, checked by :func:`fused_reasons`.
    """
    reasons = fused_reasons(method, energy, x, params)
    fused = "cuda" if x.device.type == "cuda" else "numba"
    if reasons[fused] is not None:
        return "torch"
    face, _ = get_face(energy)
    return measured_choice(face, x.shape[0], x.dtype, x.device.type)


def measured_choice(face: NumbaFace, n_chains: int, dtype: torch.dtype, device_type: str
                    ) -> str:
    """Rules 2-5 of :func:`auto_backend` for a face that can run fused: ``"torch"`` or the
    device's fused backend (``"numba"`` on the CPU, ``"cuda"`` on CUDA).

    Args:
        face: The energy's numba face.
        n_chains: The number of chains.
        dtype: The chains' dtype (float32 or float64).
        device_type: ``"cpu"`` or ``"cuda"``.
    """
    cost, dim = face_cost(face), face.dim
    if device_type == "cuda":
        return "torch" if face.dense and cost >= CUDA_DENSE_COST else "cuda"
    if dtype == torch.float64:
        return "numba" if face.dense or cost <= FLOAT64_FUSED_COST else "torch"
    if not face.dense and cost >= HEAVY_COST_PER_DIM * dim and dim <= HEAVY_LOW_DIM:
        return "numba"
    work = n_chains * (dim + cost / COST_PER_COORD)
    return "numba" if work <= FUSED_BATCH_WORK else "torch"


# -- running ---------------------------------------------------------------------------------

def draw_seed(generator: torch.Generator) -> int:
    """Draw the run's 63-bit kernel seed from ``generator`` (advances it by one draw).

    Args:
        generator: The caller's generator, on the chains' device.
    """
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator,
                             device=generator.device).item())


def _schedule_values(name: str, value: Any, n: int, *, allow_zero: bool = False) -> np.ndarray:
    from ebmcore_samplers.schedules import Constant

    if isinstance(value, Constant):  # the common case: no Python call per step
        value = float(value(0))
    if callable(value):
        out = np.array([float(value(t)) for t in range(n)], dtype=np.float64)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = np.full(n, float(value), dtype=np.float64)
    else:
        raise TypeError(f"{name} must be a number or a schedule, got {type(value).__name__}")
    bad = ~np.isfinite(out) | (out < 0) | ((out == 0) & (not allow_zero))
    if bad.any():
        t = int(np.argmax(bad))
        raise ValueError(f"{name} must stay {'non-negative' if allow_zero else 'positive'} "
                         f"and finite, got {out[t]!r} at step {t}")
    return out


def _da_defaults() -> tuple[float, float, float]:
    from ebmcore_samplers.adaptation import DualAveraging

    sig = inspect.signature(DualAveraging.__init__).parameters
    return (float(sig["gamma"].default), float(sig["t0"].default),
            float(sig["kappa"].default))


def kernel_inputs(method: str, params: dict[str, Any], dim: int, n_total: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn sampler settings into the kernel's ``sched``, ``opts``, ``minv`` and ``msqrt``.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        params: The settings; keys as in :func:`run_fused`.
        dim: The event size ``D``.
        n_total: ``burn_in + n_steps``, the number of transitions.
    """
    unknown = set(params) - set(_PARAM_DEFAULTS[method])
    if unknown:
        raise ValueError(f"unknown {method} kernel parameters {sorted(unknown)}; expected "
                         f"{sorted(_PARAM_DEFAULTS[method])}")
    q = {**_PARAM_DEFAULTS[method], **params}
    if q["step_size"] is None:
        raise ValueError(f"{method} kernel parameters need a step_size")
    why = params_reason(method, q)
    if why is not None:
        raise BackendUnavailableError(why)
    sched = np.zeros((n_total, 2), dtype=np.float64)
    sched[:, 0] = _schedule_values("step_size", q["step_size"], n_total)
    minv = np.ones(dim, dtype=np.float64)
    msqrt = np.ones(dim, dtype=np.float64)
    gamma, t0, kappa = _da_defaults()
    if method == "langevin":
        noise = _schedule_values("noise_scale", q["noise_scale"], n_total, allow_zero=True)
        sched[:, 1] = noise * np.sqrt(2.0 * sched[:, 0])
        clip = q["grad_clip"]
        lo, hi = q["clamp"] if q["clamp"] is not None else (None, None)
        opts = [0.0 if clip is None else float(clip),
                0.0 if lo is None else float(lo), 0.0 if hi is None else float(hi),
                float(lo is not None), float(hi is not None)]
    else:
        opts = [float(bool(q["adapt_step_size"])), float(q["target_accept"]), gamma, t0, kappa]
        if method == "hmc":
            opts += [float(q["jitter"]), float(q["n_leapfrog"]), DIVERGENCE_THRESHOLD]
            if q["mass"] is not None:
                mass = torch.as_tensor(q["mass"], dtype=torch.float64).reshape(-1).numpy()
                if mass.shape != (dim,):
                    raise ValueError(f"mass has {mass.size} entries but the points have {dim} "
                                     f"coordinates per chain")
                minv, msqrt = 1.0 / mass, np.sqrt(mass)
    return sched, np.asarray(opts, dtype=np.float64), minv, msqrt


def trace_indices(n_kept: int, k: int) -> list[int]:
    """Up to ``k`` kept-step indices spread evenly over ``range(n_kept)``, with the last.

    Args:
        n_kept: Number of kept steps.
        k: Most indices to return.
    """
    if n_kept <= 0 or k <= 0:
        return []
    if k >= n_kept:
        return list(range(n_kept))
    return sorted({round((j + 1) * n_kept / k) - 1 for j in range(k)})


def run_fused(method: str, backend: str, face: NumbaFace, x0: torch.Tensor, *, n_steps: int,
              burn_in: int, thin: int, params: dict[str, Any],
              generator: torch.Generator, return_trajectory: bool,
              trace_points: int = 10, trace_stride: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                         dict[str, Any]]:
    """Run ``burn_in + n_steps`` transitions of every chain in one fused kernel call.

    The caller checks applicability first (:func:`fused_reasons`); this function checks
    only what it needs to run safely.

    Args:
        method: ``"langevin"``, ``"mala"`` or ``"hmc"``.
        backend: ``"numba"`` (CPU tensors) or ``"cuda"`` (CUDA tensors).
        face: The energy's numba face.
        x0: Initial positions ``(B, *event_shape)``; never modified.
        n_steps: Kept transitions after burn-in (at least 1).
        burn_in: Transitions run first (step sizes adapt there when asked).
        thin: Record every ``thin``-th kept transition.
        params: Sampler settings. Langevin: ``step_size``, ``noise_scale``, ``grad_clip``,
            ``clamp``. MALA: ``step_size``, ``adapt_step_size``, ``target_accept``,
            ``adapt_mass`` (must be ``None``). HMC: ``step_size``, ``n_leapfrog``, ``mass``
            (``None`` or a vector), ``jitter``, ``adapt_step_size``, ``adapt_mass`` (must be
            ``None``), ``target_accept``. Step
            sizes and noise scales may be numbers or schedules (callables of the step).
        generator: Source of the run's seed (one 63-bit draw).
        return_trajectory: Also return the kept positions ``(n_steps // thin, B, ...)``.
        trace_points: Number of kept steps at which the mean energy is recorded.
        trace_stride: Record chains ``0, s, 2s, ...`` only (``s = trace_stride``): the
            trajectory is ``(n_steps // thin, ceil(B / s), ...)`` and the kernel writes
            (and this function allocates) no more than that.

    Returns:
        ``(samples, trajectory or None, acceptance or None, extra)`` where ``acceptance``
        is the per-chain mean acceptance probability over the kept transitions (MALA,
        HMC) and ``extra`` holds ``energy`` (final, ``(B,)``), ``energy_trace``,
        ``energy_trace_steps``, ``nonfinite_chains``, ``step_size`` (per chain, at the
        end), ``divergences`` (HMC) and ``seed``.
    """
    from . import factory

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if backend not in FUSED_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(FUSED_BACKENDS)}, got {backend!r}")
    if x0.requires_grad:
        raise BackendUnavailableError("x0 requires grad; pass x0.detach() to a fused backend")
    if x0.dtype not in _DTYPES:
        raise BackendUnavailableError(f"x0 has dtype {x0.dtype}; fused kernels run float32 "
                                      f"or float64 chains")
    on_cuda = x0.device.type == "cuda"
    if backend == "numba" and on_cuda:
        raise BackendUnavailableError("the numba backend runs CPU tensors; x0 is on "
                                      f"{x0.device} (use backend='cuda')")
    if backend == "cuda" and not on_cuda and not simulated():
        raise BackendUnavailableError("the cuda backend runs CUDA tensors; x0 is on "
                                      f"{x0.device}")
    if isinstance(trace_stride, bool) or not isinstance(trace_stride, int) or trace_stride < 1:
        raise ValueError(f"trace_stride must be an integer of at least 1, got {trace_stride!r}")
    b = x0.shape[0]
    d = face.dim
    n_traced = -(-b // trace_stride)
    if int(np.prod(x0.shape[1:])) != d:
        raise ValueError(f"x0 has {int(np.prod(x0.shape[1:]))} coordinates per chain but the "
                         f"face expects {d}")
    n_total = burn_in + n_steps
    sched, opts, minv, msqrt = kernel_inputs(method, params, d, n_total)
    dtype_name = _DTYPES[x0.dtype]
    energy_fn = face.energy if callable(face.energy) else None
    if backend == "numba":
        kernel: Any = factory.cpu_kernel(method, face.grad, energy_fn, d, dtype_name)
    else:
        with cuda_toolchain():
            kernel = factory.cuda_kernel(method, face.grad, energy_fn, d, dtype_name)

    dev, dt = x0.device, x0.dtype
    n_kept = n_steps // thin
    trace_at = trace_indices(n_kept, trace_points) if energy_fn is not None else []
    seed = draw_seed(generator)

    def f64(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=dev)

    x = x0.detach().reshape(b, d).to(memory_format=torch.contiguous_format).clone()
    traj = torch.empty((n_kept, n_traced, d) if return_trajectory else (1, 1, d), dtype=dt,
                       device=dev)
    trace_e = torch.full((max(len(trace_at), 1), b), math.nan, dtype=dt, device=dev)
    e_out = torch.full((b,), math.nan, dtype=dt, device=dev)
    acc = torch.zeros(b, dtype=torch.float64, device=dev)
    div = torch.zeros(b, dtype=torch.int64, device=dev)
    step_out = torch.zeros(b, dtype=torch.float64, device=dev)
    args: list[Any] = [
        x, traj, trace_stride if return_trajectory else 0,
        torch.tensor(trace_at if trace_at else [-1], dtype=torch.int64, device=dev),
        trace_e, e_out, acc, div, step_out, f64(face.params), np.uint64(seed),
        int(burn_in), int(n_steps), int(thin), f64(sched), f64(opts), f64(minv), f64(msqrt)]
    if backend == "numba":
        _run_cpu(kernel, args)
    else:
        # numba.cuda compiles lazily, at the first launch: a toolchain that cannot import
        # or compile (numba-cuda 0.30.4 under NumPy 2.5) fails here, not above.
        with cuda_toolchain():
            from .cuda import launch

            launch(kernel, args, b)

    samples = x.reshape(x0.shape)
    trajectory = (traj.reshape(n_kept, n_traced, *x0.shape[1:]) if return_trajectory
                  else None)
    nonfinite = ~torch.isfinite(x).all(1)
    if energy_fn is not None:
        nonfinite |= ~torch.isfinite(e_out)
    extra: dict[str, Any] = {
        "energy": e_out if energy_fn is not None else None,
        "energy_trace": (trace_e[: len(trace_at)].mean(1) if trace_at
                         else torch.empty(0, dtype=dt, device=dev)),
        "energy_trace_steps": torch.tensor([(k + 1) * thin for k in trace_at],
                                           dtype=torch.long),
        "nonfinite_chains": torch.nonzero(nonfinite).flatten(),
        "step_size": step_out.to(dt),
        "seed": seed,
    }
    acceptance = None
    if method in _NEEDS_ENERGY:
        acceptance = (acc / n_steps).to(dt)
    if method == "hmc":
        extra["divergences"] = div
    return samples, trajectory, acceptance, extra


def _run_cpu(kernel: Callable, args: list[Any]) -> None:
    host = [a.numpy() if isinstance(a, torch.Tensor) else a for a in args]
    # numba's OpenMP threading layer sets the OpenMP thread count when it launches a
    # parallel kernel, and torch reads that same count: without this, running the numba
    # backend would silently change the caller's torch.get_num_threads().
    torch_threads = torch.get_num_threads()
    try:
        kernel(*host)
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
