"""Shared plumbing of the analytic energies: parameter checks and the closed-form base class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch

from ebmcore.energy import Energy
from ebmcore.validation import check_int, check_points


def real(name: str, value: Any, *, positive: bool = False) -> float:
    """Return ``value`` as a finite float (strictly positive when asked), naming ``name``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()  # a one-element tensor stands for its number
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


def is_scalar(value: Any) -> bool:
    """Whether ``value`` is one number (a real, or a 0-d tensor or array)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim == 0
    return isinstance(value, Real)


def dim_arg(name: str, value: Any, *, minimum: int = 1) -> int:
    """Check a dimension argument (an integer of at least ``minimum``)."""
    return check_int(name, value, minimum=minimum)


def tensor_param(name: str, value: Any, *, shape: Sequence[int] | None = None,
                 ndim: int | None = None, positive: bool = False) -> torch.Tensor:
    """Return ``value`` as a float64 CPU tensor after checking shape and finiteness.

    Args:
        name: The argument name used in error messages.
        value: A tensor, array, list or number.
        shape: The exact shape required, if any.
        ndim: The number of dimensions required, if any.
        positive: Require every entry to be strictly positive.
    """
    if isinstance(value, str) or value is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}")
    try:
        if isinstance(value, torch.Tensor):
            t = value.detach().to(device="cpu", dtype=torch.float64)
        else:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}") from exc
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must contain only finite values")
    if positive and not bool((t > 0).all()):
        raise ValueError(f"{name} must be strictly positive, got minimum {float(t.min())!r}")
    return t.clone()


def spd_cholesky(name: str, matrix: torch.Tensor) -> torch.Tensor:
    """Return the lower Cholesky factor of a symmetric positive-definite float64 ``matrix``.

    Raises a ValueError naming ``name`` when the matrix is not symmetric (to a relative
    tolerance of 1e-8 of its largest entry) or not positive definite.
    """
    scale = float(matrix.abs().max()) if matrix.numel() else 0.0
    asym = float((matrix - matrix.transpose(-1, -2)).abs().max()) if matrix.numel() else 0.0
    if asym > 1e-8 * max(scale, 1e-300):
        raise ValueError(f"{name} must be symmetric, got max |A - A^T| = {asym:.3g}")
    chol, info = torch.linalg.cholesky_ex(0.5 * (matrix + matrix.transpose(-1, -2)))
    if bool((info != 0).any()):
        raise ValueError(f"{name} must be positive definite (its Cholesky factorisation failed)")
    return chol


def flat(*parts: torch.Tensor | float | int) -> np.ndarray:
    """Pack numbers and tensors into one flat float64 numpy array (the numba ``p``)."""
    chunks = []
    for part in parts:
        if isinstance(part, torch.Tensor):
            chunks.append(part.detach().to("cpu", torch.float64).reshape(-1).numpy())
        else:
            chunks.append(np.array([float(part)], dtype=np.float64))
    return np.ascontiguousarray(np.concatenate(chunks))


class AnalyticEnergy(Energy):
    """Base of the closed-form energies: input checks, dtype handling and the grad plumbing.

    Subclasses implement ``_energy(x)`` and ``_energy_and_grad(x)`` on a checked, detached
    batch and may implement ``_grad(x)`` when the gradient alone is cheaper. Parameters are
    buffers (float64 at construction, then the default dtype), so ``.to(dtype/device)``
    moves them; every computation runs in the dtype of the input.
    """

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        # finite=False: a finiteness check would force a host sync on every call.
        return check_points("x", x, self.event_shape, finite=False)

    def _cast(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.to(dtype=x.dtype)

    def _number(self, name: str) -> torch.Tensor | float:
        """The 0-d parameter ``name`` as a Python float on the CPU, the tensor elsewhere.

        Samplers call the closed forms once per step, and on 100,000 chains of a cheap
        energy a tensor-scalar op, a ``float(t)`` or an ``nn.Module`` attribute lookup each
        cost measurable microseconds (the lookup about 7 µs inside such a loop, against
        under 1 µs for the buffers dict). So the buffer is read from ``_buffers`` and its
        float cached, re-read only when the tensor is replaced (``.to()``) or changed in
        place (its ``_version`` moves, as under ``load_state_dict``). Reading a CUDA
        tensor's value would synchronise the device, so there the tensor is returned.
        """
        t = self._buffers[name]
        if not t.is_cpu:
            return t
        cache = self.__dict__.setdefault("_number_cache", {})
        hit = cache.get(name)
        if hit is not None and hit[0] is t and hit[1] == t._version:
            return hit[2]
        value = float(t)
        cache[name] = (t, t._version, value)
        return value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, *event_shape)``."""
        return self._energy(self._check(x))

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return the closed-form gradient ``∂E/∂x`` with the shape of ``x``."""
        return self._grad(self._check(x).detach())

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return energies ``(B,)`` and closed-form gradients from one evaluation."""
        return self._energy_and_grad(self._check(x).detach())

    def _energy(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _grad(self, x: torch.Tensor) -> torch.Tensor:
        return self._energy_and_grad(x)[1]

    def _home(self) -> tuple[torch.dtype, torch.device]:
        """The dtype and device of the parameters (where samples are drawn)."""
        buf = next(self.buffers(), None)
        if buf is None:  # pragma: no cover - every built-in energy has buffers
            return torch.get_default_dtype(), torch.device("cpu")
        return buf.dtype, buf.device

    def _randn(self, n: int, *shape: int, generator: torch.Generator | None) -> torch.Tensor:
        """Standard normal draws ``(n, *shape)`` in float64 on the parameters' device."""
        check_int("n", n, minimum=0)
        _, device = self._home()
        return torch.randn(n, *shape, generator=generator, dtype=torch.float64, device=device)


def safe_sqrt(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``sqrt(v)`` for ``v >= 0`` and the mask ``v > 0`` (or NaN), zero gradient at 0.

    Double where: the sqrt never sees 0, so autograd's gradient there is 0, not NaN. A NaN
    counts as positive, so it propagates instead of becoming a radius of 0.
    """
    positive = ~(v <= 0)
    root = torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))),
                       torch.zeros_like(v))
    return root, positive


def register_params(module: torch.nn.Module, **params: torch.Tensor | float) -> None:
    """Register float64 values as buffers in the default dtype (scalars become 0-d)."""
    dtype = torch.get_default_dtype()
    for name, value in params.items():
        t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value),
                                                                       dtype=torch.float64)
        module.register_buffer(name, t.to(dtype))
