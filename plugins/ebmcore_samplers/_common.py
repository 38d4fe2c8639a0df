"""Small building blocks the built-in samplers share: noise, per-chain scalars, energy calls."""

from __future__ import annotations

import math
import threading
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.sampler import SamplerState, check_finite_points
from ebmcore.validation import check_energy_output

_DEFAULT_GENERATORS: dict[str, torch.Generator] = {}
_LOCK = threading.Lock()


def default_generator(device: torch.device | str) -> torch.Generator:
    """Return a private, non-deterministically seeded generator for ``device``.

    Used when the caller passes no generator, so that the global torch RNG is never touched.
    """
    key = str(torch.device(device))
    with _LOCK:
        gen = _DEFAULT_GENERATORS.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.seed()
            _DEFAULT_GENERATORS[key] = gen
    return gen


def generator_for(generator: torch.Generator | None, x: torch.Tensor) -> torch.Generator:
    """Return ``generator``, or the private default generator of ``x``'s device."""
    return default_generator(x.device) if generator is None else generator


def randn_(buf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill ``buf`` with standard normal draws in place (no allocation) and return it."""
    return torch.randn(buf.shape, generator=generator, out=buf)


def rand_(buf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill ``buf`` with uniform draws on ``[0, 1)`` in place and return it."""
    return torch.rand(buf.shape, generator=generator, out=buf)


def per_chain(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """View per-chain values ``(B,)`` as ``(B, 1, ..., 1)`` so they broadcast over events."""
    return values.view(values.shape[0], *([1] * (ndim - 1)))


def flat(x: torch.Tensor) -> torch.Tensor:
    """View a batch ``(B, *event)`` as ``(B, D)`` (copies only if ``x`` is not contiguous)."""
    return x.reshape(x.shape[0], -1)


def sq_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-chain squared Euclidean norm ``(B,)`` of a batch of any event shape."""
    f = flat(x)
    return torch.linalg.vecdot(f, f)


def axpy_(y: torch.Tensor, a: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y += a * x`` in place, with ``a`` a number or per-chain values ``(B, 1, ...)``."""
    if isinstance(a, torch.Tensor):
        return y.addcmul_(x, a)
    return y.add_(x, alpha=a)


def check_grad_output(energy: Energy, x: torch.Tensor, g: object) -> torch.Tensor:
    """Check that a gradient has the shape of ``x``."""
    if not isinstance(g, torch.Tensor) or g.shape != x.shape:
        got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(f"{type(energy).__name__} must return gradients of the input's shape "
                         f"{tuple(x.shape)}, got {got}")
    return g


def initial_energy_and_grad(energy: Energy, x: torch.Tensor, *, finite_start: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check ``x``, copy it, and return ``(x_copy, energy, grad)`` with shapes validated.

    The copy means steps may update the state in place without touching the caller's tensor.
    With ``finite_start`` (what every Metropolis sampler wants) a start where the energy or
    its gradient is not finite is refused; unadjusted samplers pass ``False`` and report
    such chains as non-finite instead.

    Raises:
        ValueError: With ``finite_start``, when the energy (or its gradient) is NaN or
            infinite at some chains' starting points: a Metropolis step could never leave
            them (the message names ``x0``, how many chains and which).
    """
    check_finite_points("x", x, energy.event_shape)
    x = x.detach().clone(memory_format=torch.contiguous_format)
    e, g = energy.energy_and_grad(x)
    check_energy_output(energy, x, e)
    check_grad_output(energy, x, g)
    if finite_start:
        check_finite_start(e, g)
    return x, e.detach(), g.detach()


def check_finite_start(e: torch.Tensor, g: torch.Tensor | None = None) -> None:
    """Raise naming ``x0`` when the energy ``(B,)`` or gradient is not finite at some chains.

    Args:
        e: Energies at the starting points ``(B,)``.
        g: Their gradients ``(B, *event)``, or ``None``.
    """
    total = e.detach().sum() if g is None else e.detach().sum() + g.detach().sum()
    if bool(torch.isfinite(total)):
        return
    bad = ~torch.isfinite(e.detach())
    what = "energy (negative log density)"
    if g is not None and not bool(bad.any()):
        bad = ~torch.isfinite(g.detach().reshape(g.shape[0], -1)).all(1)
        what = "energy gradient"
    if not bool(bad.any()):
        return  # a finite sum that overflowed: every term is finite
    rows = torch.nonzero(bad).flatten().tolist()
    shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
    raise ValueError(
        f"the {what} is NaN or infinite at x0 for {len(rows)} of {e.shape[0]} chains "
        f"(rows {shown}); start every chain where the log density and its gradient are "
        f"finite (inside the support)")


def refresh_gradient(energy: Energy, state: SamplerState) -> None:
    """Recompute ``state.grad`` at ``state.x``, and ``state.energy`` only when it is free.

    The energy comes with autograd gradients anyway; closed-form ones skip it unless the
    sampling loop set ``state.need_energy`` because it records this step (else ``None``).
    """
    if state.need_energy or grad_gives_energy(energy):
        e, g = energy.energy_and_grad(state.x)
        state.energy = e.detach()
    else:
        g = energy.grad(state.x)
        state.energy = None
    state.grad = g.detach()


def grad_gives_energy(energy: Energy) -> bool:
    """Whether ``energy.grad`` computes the energy anyway (so asking for both costs nothing)."""
    return type(energy).grad is Energy.grad


def validate_target_accept(value: object) -> float:
    """Return ``value`` as a float after checking it lies strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"target_accept must be a number in (0, 1), got {value!r}")
    return float(value)


def check_flag(name: str, value: object) -> bool:
    """Return ``value`` after checking it is a bool (``1`` or ``"yes"`` are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def preconditioner(energy: Energy, x: torch.Tensor) -> torch.Tensor:
    """The energy's ``L`` (``M = L Lᵀ``, ``(D, D)``) in ``x``'s dtype and device, checked.

    For samplers with ``precondition=True``: ``energy.preconditioner()`` must exist and
    return a finite ``(D, D)`` tensor, ``D`` the size of one point of ``x`` ``(B, *event)``.
    """
    get = getattr(energy, "preconditioner", None)
    tril = get() if callable(get) else None
    if tril is None:
        raise ValueError(f"precondition=True needs an energy with a preconditioner(), such as "
                         f"a model with a Gaussian base (conv with confine='gaussian'); "
                         f"{type(energy).__name__} has none")
    dim = math.prod(x.shape[1:])
    if not isinstance(tril, torch.Tensor) or tuple(tril.shape) != (dim, dim):
        raise ValueError(f"{type(energy).__name__}.preconditioner() must return a ({dim}, "
                         f"{dim}) tensor for points of shape {tuple(x.shape[1:])}, got "
                         f"{getattr(tril, 'shape', type(tril).__name__)}")
    if not bool(torch.isfinite(tril).all()):
        raise ValueError(f"{type(energy).__name__}.preconditioner() returned non-finite "
                         f"values; precondition=True needs a finite factor")
    return tril.detach().to(device=x.device, dtype=x.dtype)


def preconditioned_refusal(sampler: Any) -> str | None:
    """Why a sampler with ``precondition=True`` cannot run fused, or ``None`` without it.

    The fused numba and CUDA kernels know nothing of preconditioners, so preconditioned
    chains run on the torch (or compiled) backend.
    """
    if not sampler.precondition:
        return None
    return (f"preconditioned {type(sampler).__name__} (precondition=True) runs on the torch "
            f"(or compiled) backend only")
