"""The energy contract: ``p(x) ∝ exp(-E(x))`` over a batch of points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class NumbaFace:
    """What an energy gives the fused numba / numba.cuda kernels.

    Both functions are plain Python over one point, using only ``math``, loops and indexing,
    so that the backends can compile them with ``numba.njit`` and ``numba.cuda.jit(device=True)``.
    Parameters travel in ``params``, never as captured globals (numba freezes globals).

    Attributes:
        energy: ``energy(x, p) -> float`` for one point ``x`` (1-D array of length ``dim``).
        grad: ``grad(x, p, out) -> None`` writes ``∂E/∂x`` into ``out`` (length ``dim``).
        params: Every parameter packed into one flat float64 array.
        dim: The flattened event size ``D`` the functions expect.
        dense: ``True`` when a gradient is a dense matrix-vector product, ``D²``
            multiply-adds per point with a matrix shared by every point (a full-covariance
            Gaussian). The torch backend runs such an energy as one matrix product over the
            batch, which re-reads the matrix far less than a loop per chain does, so
            ``backend="auto"`` weighs it differently (see
            :func:`ebmcore_samplers.kernels.dispatch.auto_backend`).
        cost: Roughly how many multiply-adds one call of ``grad`` does, for
            ``backend="auto"``; ``None`` (the default) counts one per packed parameter,
            right for faces that read each parameter about once per call.

    On the CPU the functions are compiled with the fast-math flags ``reassoc`` and
    ``contract``: sums may be reordered into SIMD lanes and multiply-adds fused, so a face
    must not rely on the order of its floating-point additions (compensated summation, for
    example). NaN and infinity keep their meaning.
    """

    energy: Callable[..., float]
    grad: Callable[..., None]
    params: np.ndarray
    dim: int
    dense: bool = False
    cost: int | None = None

    def __post_init__(self) -> None:
        params = np.ascontiguousarray(np.asarray(self.params, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "params", params)
        if self.cost is None:
            object.__setattr__(self, "cost", int(params.size))
        elif isinstance(self.cost, bool) or not isinstance(self.cost, int) or self.cost < 1:
            raise ValueError(f"cost must be a positive integer (multiply-adds per gradient) "
                             f"or None, got {self.cost!r}")


class Energy(nn.Module):
    """Base class of every energy.

    Subclasses implement :meth:`forward`; the rest has working defaults. An energy may also
    declare what it knows in closed form: :meth:`grad` (override it), :attr:`log_z`,
    :meth:`sample` (exact samples) and :meth:`numba_face` (opens the fused backends).

    Optional capabilities the core uses, each a method with a default (override what the
    energy has; nothing is probed with ``getattr``):

    - :meth:`preconditioner`: a ``(D, D)`` factor ``L`` that samplers with
      ``precondition=True`` move by (default ``None``).
    - :meth:`base_energy`: the reference energy a model corrects, with exact samples and
      ``log_z`` (default ``None``); annealed importance sampling starts from it.
    - :attr:`confinement_fitted` and :meth:`fit_confinement`: a confining term fixed from
      data, which :class:`ebmcore.train.Trainer` fits before the first step when
      :attr:`confinement_fitted` is false (default: nothing to fit).

    Attributes:
        event_shape: The shape of one point, or ``None`` when any shape is accepted.
        normalisable: Whether the energy declares that ``exp(-E)`` has a finite integral,
            i.e. that it is a density; :func:`ebmcore.testing.check_energy` then checks that
            it rises far away. An energy that knows its :attr:`log_z` declares it implicitly.
    """

    event_shape: tuple[int, ...] | None = None
    normalisable: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Return the energies ``(B,)`` of a batch ``x`` of shape ``(B, *event_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``∂E/∂x`` with the shape of ``x`` (autograd unless overridden)."""
        return self.energy_and_grad(x)[1]

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return energies ``(B,)`` and gradients, sharing one evaluation where possible.

        The default runs autograd on a detached copy of ``x``, so it never builds a graph
        through the caller's tensor. Energies with a closed-form gradient override this.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must have a floating-point dtype, got {x.dtype}")
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            e = self.forward(x_)
            (g,) = torch.autograd.grad(e.sum(), x_)
        return e.detach(), g

    @property
    def log_z(self) -> float | None:
        """The exact log normaliser ``log ∫ exp(-E(x)) dx``, or ``None`` when unknown."""
        return None

    @property
    def has_exact_sampler(self) -> bool:
        """Whether :meth:`sample` draws exact samples."""
        return type(self).sample is not Energy.sample

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples; only energies that know how override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot draw exact samples")

    def numba_face(self) -> NumbaFace | None:
        """Return the energy's numba functions and packed parameters, or ``None``."""
        return None

    def preconditioner(self) -> torch.Tensor | None:
        """Return the factor ``L`` (``M = L Lᵀ``, ``(D, D)`` for ``D`` coordinates per point)
        that samplers with ``precondition=True`` move by, or ``None`` (the default)."""
        return None

    def base_energy(self) -> Energy | None:
        """Return the reference energy this model corrects (exact ``sample`` and ``log_z``;
        the natural start of annealed importance sampling), or ``None`` (the default)."""
        return None

    @property
    def confinement_fitted(self) -> bool:
        """Whether the energy's confining term is fixed; ``True`` (the default) when it has
        none, so a trainer calls :meth:`fit_confinement` only where this is ``False``."""
        return True

    def fit_confinement(self, data: torch.Tensor) -> None:
        """Fix the confining term from a data sample ``(N, *event_shape)``.

        The default raises TypeError: an energy without a confining term has nothing to fit
        (its :attr:`confinement_fitted` is ``True``).
        """
        raise TypeError(f"{type(self).__name__} has no confinement to fit "
                        f"(its confinement_fitted is always True)")

    def extra_repr(self) -> str:
        shape = "any" if self.event_shape is None else tuple(self.event_shape)
        return f"event_shape={shape}"


def as_energy(obj: Any) -> Energy:
    """Return ``obj`` when it is an :class:`Energy`, else raise a TypeError saying what is.

    A field that is ``-∇E`` (:meth:`ebmcore.field.Field.energy`) gives its energy; a field
    without one is refused with a message saying where fields go.
    """
    if not isinstance(obj, Energy):
        from ebmcore.field import Field, energy_of  # lazy: ebmcore.field imports this module

        if isinstance(obj, Field):
            return energy_of(obj)
        raise TypeError(
            f"energy must be an ebmcore.Energy, got {type(obj).__name__}; wrap a plain "
            f"callable with ebmcore.create('energy', 'callable', fn=...)"
        )
    return obj
