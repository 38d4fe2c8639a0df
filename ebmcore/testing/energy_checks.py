"""Conformance checks for energies: shapes, dtypes, gradients, devices, numba face, log Z, samples.

Plugin authors call :func:`check_energy` from their own tests::

    from ebmcore.testing import check_energy

    def test_my_energy():
        check_energy(MyEnergy(dim=2), (2,))

Every failure raises an ``AssertionError`` that says which property broke and by how much.
"""

from __future__ import annotations

import copy
import dis
import functools
import math
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ebmcore.energy import Energy, NumbaFace
from ebmcore.validation import same_device

#: Exact samples drawn for the moment comparison in one or two dimensions.
N_MOMENT_SAMPLES = 20_000
#: Allowed deviation of a sample statistic from its quadrature value, in Monte Carlo SEs.
MCSE_TOLERANCE = 5.0
#: Global names a numba face may use: ``math`` and builtins numba and numba.cuda both know.
NUMBA_ALLOWED_GLOBALS = frozenset({"math", "range", "len", "abs", "min", "max", "float", "int",
                                   "bool"})

#: Radii of the far-field probe of an energy that claims to be a density (500 rather than
#: 1000: energies with an exponential inside, such as Neal's funnel, overflow float64 past 709).
FAR_RADII = (10.0, 100.0, 500.0)

# Relative tolerances per dtype for results that should agree up to rounding.
_RTOL = {torch.float16: 1e-2, torch.bfloat16: 1e-2, torch.float32: 1e-5, torch.float64: 1e-10}


class EnergyCheckSkipped(UserWarning):
    """A part of :func:`check_energy` could not run for this energy (the message says why)."""


def check_energy(energy: Energy, event_shape: Sequence[int], *,
                 dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
                 batch_sizes: Sequence[int] = (1, 7), device: str | torch.device | None = None,
                 generator: torch.Generator | None = None) -> None:
    """Check that ``energy`` honours the :class:`ebmcore.Energy` contract.

    Checks, in order: the output has shape ``(B,)`` and the input's dtype; batches are
    independent (a batch gives the energies of its points one at a time); ``grad`` and
    ``energy_and_grad`` agree with ``forward`` and, in float64, with autograd; the input is
    not modified; values are finite on standard normal points; results agree across dtypes;
    ``.to(device)`` round trips (CPU always, CUDA when available). When the energy claims to
    be a density (``normalisable`` or a known ``log_z``): it rises far away, with a log-log
    slope above ``D`` along every probed ray from the origin between radii ``FAR_RADII[-2]``
    and ``FAR_RADII[-1]``, up to energies above those on the test points (see
    :func:`ebmcore.evaluation.tails.far_field`). When declared: the numba
    face (only ``math``, loops and indexing; compiled with ``numba.njit``) matches ``forward``
    and ``grad`` in float64; ``log_z`` matches numerical quadrature (``D <= 2``; a double
    exponential rule centred at the origin, so mass should lie within a few hundred units of
    it); exact samples have the right shape, dtype and device, are finite, repeat under the
    same generator seed, leave the global RNG alone and, for ``D <= 2``, match quadrature
    moments (coordinate means and means of ``tanh`` products, which stay bounded for
    heavy-tailed targets) within ``MCSE_TOLERANCE`` Monte Carlo standard errors. For
    ``D > 2`` the quadrature checks are skipped with an :class:`EnergyCheckSkipped` warning.

    The energy itself is never modified: each dtype and device runs on a deep copy.

    Args:
        energy: The energy to check.
        event_shape: The shape of one point, e.g. ``(2,)``; must match ``energy.event_shape``
            when the energy declares one.
        dtypes: Floating dtypes to run the shape, batch and finiteness checks in. The
            autograd, numba and quadrature checks always run in float64.
        batch_sizes: Batch sizes to try.
        device: Device of the main checks (default CPU).
        generator: Seeds the test points and draws (default ``torch.Generator().manual_seed(0)``).

    Raises:
        AssertionError: When the energy breaks the contract; the message says how.
    """
    if not isinstance(energy, Energy):
        raise AssertionError(f"energy must be an ebmcore.Energy, got {type(energy).__name__}")
    shape = tuple(int(s) for s in event_shape)
    if energy.event_shape is not None and tuple(energy.event_shape) != shape:
        raise AssertionError(f"{_name(energy)}.event_shape is {tuple(energy.event_shape)}, "
                             f"the check was asked for {shape}")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be positive integers, got {tuple(batch_sizes)}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    # At least 5 points, so that the numba face is compared on several.
    points = torch.randn(max(*batch_sizes, 5), *shape, generator=gen, dtype=torch.float64)

    results = {}
    for dtype in dtypes:
        moved = _moved(energy, dtype, device)
        for b in batch_sizes:
            _check_batch(moved, points[:b].to(device, dtype), dtype)
        results[dtype] = _energy_and_grad_of(moved, points.to(device, dtype))
    e64 = _moved(energy, torch.float64, device)
    _check_autograd(e64, points.to(device))
    _check_dtype_agreement(energy, results, _energy_and_grad_of(e64, points.to(device)))
    _check_devices(energy, points)

    face = e64.numba_face()
    if face is not None:
        _check_numba(e64, face, points, device)
    dim = math.prod(shape)
    quad = None
    if e64.log_z is not None or e64.has_exact_sampler:
        if dim <= 2:
            quad = _quadrature(e64, shape, device)
        else:
            warnings.warn(f"check_energy({_name(energy)}): quadrature checks of log_z and "
                          f"sample moments skipped for D={dim} > 2", EnergyCheckSkipped,
                          stacklevel=2)
    if e64.normalisable or e64.log_z is not None:
        _check_normalisable(e64, points.to(device))
    if e64.log_z is not None:
        _check_log_z(e64, quad)
    if e64.has_exact_sampler:
        for dtype in dtypes:
            _check_sample_basics(_moved(energy, dtype, device), shape, dtype, device, seed)
        if quad is not None:
            _check_sample_moments(e64, quad, device, seed)


# -- helpers ---------------------------------------------------------------------------------

def _name(energy: Any) -> str:
    return type(energy).__name__


def _fail(energy: Any, what: str) -> AssertionError:
    return AssertionError(f"{_name(energy)}: {what}")


def _moved(energy: Energy, dtype: torch.dtype, device: torch.device) -> Energy:
    try:
        clone = copy.deepcopy(energy)
    except Exception as exc:  # pragma: no cover - depends on the plugin's module
        raise _fail(energy, f"copy.deepcopy failed ({exc}); the checks run on copies") from exc
    moved = clone.to(device=device, dtype=dtype)
    if not isinstance(moved, Energy):
        raise _fail(energy, f".to() returned {type(moved).__name__}, not an Energy")
    return moved


def _tol(dtype: torch.dtype, ref: torch.Tensor) -> tuple[float, float]:
    rtol = _RTOL.get(dtype, 1e-5)
    scale = float(ref.detach().abs().max()) if ref.numel() else 0.0
    return rtol, rtol * max(1.0, scale)


def _assert_close(energy: Any, what: str, got: torch.Tensor, want: torch.Tensor,
                  rtol: float, atol: float) -> None:
    got_, want_ = got.detach().double().cpu(), want.detach().double().cpu()
    if got_.shape != want_.shape:
        raise _fail(energy, f"{what}: shape {tuple(got_.shape)} != {tuple(want_.shape)}")
    err = (got_ - want_).abs()
    bound = atol + rtol * want_.abs()
    if not bool((err <= bound).all()):
        i = int(torch.argmax(err - bound))
        raise _fail(energy, f"{what}: max deviation {float(err.max()):.3g} (at flat index {i}: "
                            f"{float(got_.flatten()[i])!r} vs {float(want_.flatten()[i])!r}; "
                            f"rtol={rtol:g}, atol={atol:.3g})")


def _energy_and_grad_of(energy: Energy, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return energy(x).detach(), energy.grad(x).detach()


def _check_batch(energy: Energy, x: torch.Tensor, dtype: torch.dtype) -> None:
    b = x.shape[0]
    x_before = x.clone()
    with torch.no_grad():
        e = energy(x)
    if not isinstance(e, torch.Tensor) or e.shape != (b,):
        got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        raise _fail(energy, f"forward on shape {tuple(x.shape)} returned {got}, expected ({b},)")
    if e.dtype != dtype:
        raise _fail(energy, f"forward on {dtype} input returned {e.dtype}")
    if not same_device(e.device, x.device):
        raise _fail(energy, f"forward on {x.device} input returned a tensor on {e.device}")
    if not bool(torch.isfinite(e).all()):
        raise _fail(energy, f"forward returned non-finite energies on standard normal points "
                            f"({dtype}): {e.tolist()}")
    g = energy.grad(x)
    if not isinstance(g, torch.Tensor) or g.shape != x.shape or g.dtype != dtype:
        got = (tuple(g.shape), g.dtype) if isinstance(g, torch.Tensor) else type(g).__name__
        raise _fail(energy, f"grad must return shape {tuple(x.shape)} and {dtype}, got {got}")
    if not bool(torch.isfinite(g).all()):
        raise _fail(energy, f"grad is non-finite on standard normal points ({dtype})")
    pair = energy.energy_and_grad(x)
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise _fail(energy, "energy_and_grad must return a tuple (energies, gradients)")
    e2, g2 = pair
    if e2.shape != (b,) or e2.dtype != dtype or g2.shape != x.shape or g2.dtype != dtype:
        raise _fail(energy, f"energy_and_grad returned shapes {tuple(e2.shape)}, "
                            f"{tuple(g2.shape)} and dtypes {e2.dtype}, {g2.dtype}; expected "
                            f"({b},), {tuple(x.shape)} in {dtype}")
    if not torch.equal(x, x_before):
        raise _fail(energy, "forward, grad or energy_and_grad modified its input in place")
    rtol, atol = _tol(dtype, e)
    _assert_close(energy, f"energy_and_grad energies vs forward ({dtype})", e2, e, rtol, atol)
    grtol, gatol = _tol(dtype, g)
    _assert_close(energy, f"energy_and_grad gradients vs grad ({dtype})", g2, g, grtol, gatol)
    if b > 1:
        with torch.no_grad():
            single = torch.cat([energy(x[i:i + 1]) for i in range(b)])
        _assert_close(energy, f"batch of {b} vs one point at a time ({dtype})", e, single,
                      10 * rtol, 10 * atol)


def _check_autograd(energy: Energy, x: torch.Tensor) -> None:
    x_ = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        e = energy(x_)
        if not e.requires_grad:
            raise _fail(energy, "forward is not differentiable by autograd (output has no graph)")
        (auto,) = torch.autograd.grad(e.sum(), x_)
    closed = energy.grad(x.detach())
    rtol, atol = 1e-7, 1e-9 * max(1.0, float(auto.abs().max()))
    _assert_close(energy, "grad vs autograd of forward (float64)", closed, auto, rtol, atol)
    _, g2 = energy.energy_and_grad(x.detach())
    _assert_close(energy, "energy_and_grad gradient vs autograd (float64)", g2, auto, rtol, atol)


def _check_dtype_agreement(energy: Energy, results: dict, ref: tuple) -> None:
    e64, g64 = ref
    for dtype, (e, g) in results.items():
        if dtype == torch.float64:
            continue
        rtol = 1e3 * _RTOL.get(dtype, 1e-5)  # parameters and arithmetic both round
        _assert_close(energy, f"{dtype} energies vs float64", e, e64, rtol,
                      rtol * max(1.0, float(e64.abs().max())))
        _assert_close(energy, f"{dtype} gradients vs float64", g, g64, rtol,
                      rtol * max(1.0, float(g64.abs().max())))


def _check_devices(energy: Energy, points: torch.Tensor) -> None:
    cpu = _moved(energy, torch.float64, torch.device("cpu"))
    with torch.no_grad():
        want = cpu(points)
    if not torch.cuda.is_available():
        back = cpu.to("cpu")
    else:
        on_gpu = cpu.to("cuda")
        with torch.no_grad():
            got = on_gpu(points.cuda())
        if got.device.type != "cuda":
            raise _fail(energy, f"after .to('cuda') forward returned a tensor on {got.device}")
        rtol, atol = _tol(torch.float64, want)
        _assert_close(energy, "CUDA energies vs CPU (float64)", got, want, 1e3 * rtol, 1e3 * atol)
        back = on_gpu.to("cpu")
    with torch.no_grad():
        again = back(points)
    rtol, atol = _tol(torch.float64, want)
    _assert_close(energy, "energies after a .to(device) round trip", again, want, rtol, atol)


# -- numba -----------------------------------------------------------------------------------

@functools.cache
def _njit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``numba.njit(fn)``, memoised per function object (compiling costs ~1 s)."""
    import numba

    return numba.njit(fn)


def _face_globals(fn: Callable[..., Any]) -> tuple[set[str], list[str]]:
    names, imports = set(), []
    for ins in dis.get_instructions(fn):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(str(ins.argval))
        elif ins.opname == "IMPORT_NAME":
            imports.append(str(ins.argval))
    return names, imports


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_face_function(energy: Energy, label: str, fn: Any) -> None:
    if not isinstance(fn, types.FunctionType):
        raise _fail(energy, f"numba face {label} must be a plain Python function, got "
                            f"{type(fn).__name__}")
    # Integer cells are sizes frozen at compile time (a face memoised per shape); anything
    # else in a closure is a parameter that would be frozen too and must travel in p.
    cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
    captured = sorted(name for name, cell in cells.items() if not _is_size(cell.cell_contents))
    if captured:
        raise _fail(energy, f"numba face {label} {fn.__name__} is a closure over "
                            f"{tuple(captured)}; pass parameters in p instead (only integer "
                            f"sizes may be closure constants)")
    names, imports = _face_globals(fn)
    bad = sorted(names - NUMBA_ALLOWED_GLOBALS)
    if bad or imports:
        raise _fail(energy, f"numba face {label} {fn.__name__} uses globals {bad or imports}; "
                            f"only {sorted(NUMBA_ALLOWED_GLOBALS)} compile for numba.cuda too "
                            f"(and numba freezes globals)")


def _check_numba(energy: Energy, face: Any, points: torch.Tensor,
                 device: torch.device) -> None:
    if not isinstance(face, NumbaFace):
        raise _fail(energy, f"numba_face() must return an ebmcore.NumbaFace or None, got "
                            f"{type(face).__name__}")
    dim = math.prod(points.shape[1:])
    if face.dim != dim:
        raise _fail(energy, f"numba face dim is {face.dim}, the event size is {dim}")
    if face.params.dtype != np.float64 or face.params.ndim != 1:
        raise _fail(energy, "numba face params must be a flat float64 array")
    _check_face_function(energy, "energy", face.energy)
    _check_face_function(energy, "grad", face.grad)
    f_energy, f_grad = _njit(face.energy), _njit(face.grad)
    pts = points[:5].reshape(-1, dim)
    batch = pts.reshape(-1, *points.shape[1:]).to(device)
    with torch.no_grad():
        want_e = energy(batch).double().cpu()
        want_g = energy.grad(batch).double().reshape(-1, dim).cpu()
    got_e = torch.empty_like(want_e)
    got_g = torch.empty_like(want_g)
    for i in range(pts.shape[0]):
        x = np.ascontiguousarray(pts[i].numpy(), dtype=np.float64)
        out = np.full(dim, np.nan)
        got_e[i] = float(f_energy(x, face.params))
        f_grad(x, face.params, out)
        got_g[i] = torch.from_numpy(out)
    rtol, atol = 1e-9, 1e-9 * max(1.0, float(want_e.abs().max()))
    _assert_close(energy, "numba face energy vs forward (float64)", got_e, want_e, rtol, atol)
    rtol, atol = 1e-9, 1e-9 * max(1.0, float(want_g.abs().max()))
    _assert_close(energy, "numba face grad vs grad (float64)", got_g, want_g, rtol, atol)


# -- quadrature ------------------------------------------------------------------------------

# Double-exponential (sinh-sinh) rule on the real line: x = sinh(π/2 sinh t), trapezoid in t.
# T = 2.21 reaches |x| ≈ 600: wide enough for Neal's funnel, small enough that exp(±x)
# stays finite in float64.
_DE_T = 2.21


def _de_nodes(h: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(round(_DE_T / h))
    t = torch.arange(-n, n + 1, dtype=torch.float64) * h
    u = 0.5 * math.pi * torch.sinh(t)
    return torch.sinh(u), h * 0.5 * math.pi * torch.cosh(t) * torch.cosh(u)


def _grid_energy(energy: Energy, pts: torch.Tensor, device: torch.device) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for chunk in pts.split(1 << 17):
            out.append(energy(chunk.to(device)).double().cpu())
    e = torch.cat(out)
    bad = torch.isnan(e) | (e == -math.inf)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise _fail(energy, f"energy is {float(e[i])} at {pts[i].tolist()} (quadrature grid)")
    return e


def _quadrature_at(energy: Energy, shape: tuple[int, ...], h: float,
                   device: torch.device) -> dict[str, Any]:
    x1, w1 = _de_nodes(h)
    dim = math.prod(shape)
    if dim == 1:
        pts, w = x1[:, None], w1
    else:
        gx, gy = torch.meshgrid(x1, x1, indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
        w = (w1[:, None] * w1[None, :]).reshape(-1)
    e = _grid_energy(energy, pts.reshape(-1, *shape), device)
    shift = float(e.min())
    dens = w * torch.exp(-(e - shift))           # +inf energies give 0
    z = float(dens.sum())
    t = torch.tanh(pts)

    def mean(f: torch.Tensor) -> torch.Tensor:
        return (dens[:, None] * f).sum(0) / z

    pairs = [(i, j) for i in range(dim) for j in range(i, dim)]
    tt = torch.stack([t[:, i] * t[:, j] for i, j in pairs], dim=1)
    return {"log_z": math.log(z) - shift, "mean": mean(pts), "sq": mean(pts * pts),
            "t": mean(t), "t2": mean(t * t), "tt": mean(tt), "tt2": mean(tt * tt),
            "pairs": pairs}


def _quadrature(energy: Energy, shape: tuple[int, ...], device: torch.device) -> dict[str, Any]:
    """Quadrature moments at two step sizes; ``err_*`` are their differences."""
    coarse = _quadrature_at(energy, shape, 1 / 64, device)
    fine = _quadrature_at(energy, shape, 1 / 128, device)
    fine["err_log_z"] = abs(fine["log_z"] - coarse["log_z"])
    for key in ("mean", "sq", "t", "t2", "tt", "tt2"):
        fine[f"err_{key}"] = (fine[key] - coarse[key]).abs()
    return fine


def _check_normalisable(energy: Energy, points: torch.Tensor) -> None:
    from ebmcore.evaluation.tails import far_field

    with torch.no_grad():
        highest = float(energy(points).max())
    far = far_field(energy, 0.0, FAR_RADII, reference_energy=highest)
    if not far.rises:
        raise _fail(energy, f"claims to be a density (normalisable or log_z), but exp(-E) is "
                            f"not integrable by the far-field probe: {far.reason}")


def _check_log_z(energy: Energy, quad: dict[str, Any] | None) -> None:
    log_z = energy.log_z
    if not isinstance(log_z, (float, int)) or not math.isfinite(log_z):
        raise _fail(energy, f"log_z must be a finite float or None, got {log_z!r}")
    if quad is None:
        return
    # Parameters may be rounded to float32 at construction: allow 1e-5, plus 10x the
    # quadrature's own step-halving difference.
    tol = 1e-5 + 10 * quad["err_log_z"]
    if abs(log_z - quad["log_z"]) > tol:
        raise _fail(energy, f"log_z = {log_z!r} but quadrature gives {quad['log_z']!r} "
                            f"(|diff| {abs(log_z - quad['log_z']):.3g} > {tol:.3g})")


# -- samples ---------------------------------------------------------------------------------

def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _check_sample_basics(energy: Energy, shape: tuple[int, ...], dtype: torch.dtype,
                         device: torch.device, seed: int) -> None:
    n = 64
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    a = energy.sample(n, generator=_generator(device, seed))
    b = energy.sample(n, generator=_generator(device, seed))
    if not torch.equal(torch.get_rng_state(), cpu_state) or (
            cuda_state is not None and any(not torch.equal(s, t) for s, t in
                                           zip(torch.cuda.get_rng_state_all(), cuda_state,
                                               strict=True))):
        raise _fail(energy, "sample(generator=...) advanced the global RNG")
    if not isinstance(a, torch.Tensor) or a.shape != (n, *shape):
        got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise _fail(energy, f"sample({n}) returned {got}, expected {(n, *shape)}")
    if a.dtype != dtype or not same_device(a.device, device):
        raise _fail(energy, f"sample() of an energy in {dtype} on {device} returned "
                            f"{a.dtype} on {a.device}")
    if not bool(torch.isfinite(a).all()):
        raise _fail(energy, "sample() returned non-finite values")
    if not torch.equal(a, b):
        raise _fail(energy, "sample() with two generators of the same seed gave different draws")


def _check_sample_moments(energy: Energy, quad: dict[str, Any], device: torch.device,
                          seed: int) -> None:
    n = N_MOMENT_SAMPLES
    x = energy.sample(n, generator=_generator(device, seed + 1)).double().cpu().reshape(n, -1)
    t = torch.tanh(x)
    tt = torch.stack([t[:, i] * t[:, j] for i, j in quad["pairs"]], dim=1)
    checks = [
        ("coordinate means", x.mean(0), quad["mean"], quad["sq"] - quad["mean"] ** 2,
         quad["err_mean"]),
        ("means of tanh(x_i)", t.mean(0), quad["t"], quad["t2"] - quad["t"] ** 2, quad["err_t"]),
        ("means of tanh(x_i) tanh(x_j)", tt.mean(0), quad["tt"], quad["tt2"] - quad["tt"] ** 2,
         quad["err_tt"]),
    ]
    for label, got, want, var, err in checks:
        mcse = (var.clamp_min(0) / n).sqrt()  # a rounding-level negative variance is 0
        bound = MCSE_TOLERANCE * mcse + 10 * err + 1e-12
        dev = (got - want).abs()
        if not bool((dev <= bound).all()):
            raise _fail(energy, f"exact samples disagree with quadrature on {label}: sample "
                                f"{got.tolist()} vs quadrature {want.tolist()} "
                                f"(MCSE {mcse.tolist()}, n={n}, allowed {MCSE_TOLERANCE} MCSE)")
