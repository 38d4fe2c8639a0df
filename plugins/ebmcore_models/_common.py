"""Pieces shared by the neural energies: activations, layer wrapping, shape checks, the wall."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ebmcore.component import normalize_name
from ebmcore.energy import Energy
from ebmcore.validation import check_int
from ebmcore_models.confinement import Confinement
from ebmcore_models.gaussian_base import BaseEnergy, GaussianBase

#: What ``confine`` may name: the wall around the data, the data's Gaussian, or nothing.
CONFINEMENTS = ("wall", "gaussian", "none")

#: Activations selectable by name, each built with torch's default settings.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: Any) -> nn.Module:
    """Return a fresh activation module for ``name`` (case and ``-``/``_`` ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, got {type(name).__name__}")
    factory = ACTIVATIONS.get(normalize_name(name))
    if factory is None:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return factory()


def check_widths(name: str, widths: Any, *, allow_empty: bool) -> tuple[int, ...]:
    """Return ``widths`` as a tuple of positive layer sizes."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"{name} must be a list or tuple of positive integers, got "
                        f"{type(widths).__name__}")
    if not widths and not allow_empty:
        raise ValueError(f"{name} must hold at least one width, got an empty sequence")
    return tuple(check_int(f"{name}[{i}]", w, minimum=1) for i, w in enumerate(widths))


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` after checking it is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``layer`` in spectral normalisation of its weight when ``enabled``."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


def check_input(x: torch.Tensor, event_shape: tuple[int, ...]) -> None:
    """Raise unless ``x`` is floating point of shape ``(B, *event_shape)``; metadata only.

    Only metadata is read, so the check costs nothing per step and ``torch.compile`` turns
    it into a shape guard: right-shaped calls trace as one graph. A wrong shape raises this
    ValueError eagerly and under plain ``torch.compile``; with ``fullgraph=True`` dynamo
    wraps it in its own error (it cannot raise from inside a graph), message included.
    """
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating-point dtype, got {x.dtype}")
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != event_shape:
        raise ValueError(
            f"x must have shape (B, {', '.join(map(str, event_shape))}) for event shape "
            f"{event_shape}, got {tuple(x.shape)}"
        )


def confinement_kind(confine: Any) -> str:
    """Return ``"wall"``, ``"gaussian"`` or ``"none"`` for a ``confine`` argument.

    ``True`` means ``"wall"`` and ``False`` ``"none"``; names are case-insensitive.
    """
    if isinstance(confine, bool):
        return "wall" if confine else "none"
    if not isinstance(confine, str):
        raise TypeError(f"confine must be true, false or one of {', '.join(CONFINEMENTS)}, "
                        f"got {type(confine).__name__}")
    if normalize_name(confine) in CONFINEMENTS:
        return normalize_name(confine)
    raise ValueError(f"confine must be true, false or one of {', '.join(CONFINEMENTS)}, "
                     f"got {confine!r}")


def make_confinement(event_shape: tuple[int, ...], confine: Any,
                     wall_width: float) -> Confinement | GaussianBase | None:
    """Return the confining term for ``event_shape`` that ``confine`` names, or ``None``."""
    kind = confinement_kind(confine)
    if kind == "wall":
        return Confinement(event_shape, wall_width)
    return GaussianBase(event_shape) if kind == "gaussian" else None


def confined(energy: torch.Tensor, x: torch.Tensor,
             confinement: Confinement | GaussianBase | None) -> torch.Tensor:
    """Return the network's ``energy`` plus the confining term at ``x`` (unchanged without)."""
    return energy if confinement is None else energy + confinement(x).to(energy.dtype)


class ConfinedEnergy(Energy):
    """A neural energy that may carry a confining term as ``self.confinement``.

    Subclasses set ``self.confinement`` (a :class:`Confinement`, a :class:`GaussianBase` or
    ``None``) in ``__init__``. This class implements the :class:`ebmcore.Energy` members the
    core uses: :attr:`confinement_fitted` and :meth:`fit_confinement` (the trainer fits the
    term before the first step), and, with a Gaussian base, :meth:`base_energy` and
    :meth:`preconditioner`.
    """

    # set by every subclass's __init__ (no class default: nn.Module registers a submodule
    # outside __dict__, where a class attribute would shadow it)
    confinement: Confinement | GaussianBase | None

    def fit_confinement(self, data: torch.Tensor) -> None:
        """Fit the confining term to a data sample (a no-op without one)."""
        if self.confinement is not None:
            self.confinement.fit(data.to(self.confinement.fitted.device))

    def base_energy(self) -> BaseEnergy | None:
        """The Gaussian base as an energy with exact samples and ``log_z`` (the natural start
        of annealed importance sampling), or ``None`` when the model has no Gaussian base."""
        base = self.confinement
        return base.as_energy() if isinstance(base, GaussianBase) else None

    def preconditioner(self) -> torch.Tensor | None:
        """The Gaussian base's covariance factor ``L`` (``Σ = L Lᵀ``, ``(D, D)``), which
        samplers with ``precondition=True`` move by, or ``None`` without a Gaussian base."""
        base = self.confinement
        return base.scale_tril if isinstance(base, GaussianBase) else None

    @property
    def confinement_fitted(self) -> bool:
        """Whether the confining term has been fitted to data (true when there is none)."""
        return self.confinement is None or bool(self.confinement.fitted)
