"""Conformance checks for models: construction from the data's shape, outputs, parameter gradients.

Plugin authors call :func:`check_model` from their own tests::

    import ebmcore
    from ebmcore.testing import check_model

    def test_my_model():
        check_model(ebmcore.get_component("model", "my_model"), (2,))

A model is an :class:`ebmcore.Energy` with learnable parameters that the core builds for a
data set: its :class:`ebmcore.Component` says, in ``data_shape``, which constructor keyword
takes the data's shape. Every failure raises an ``AssertionError`` that says what broke.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ebmcore.component import DATA_SHAPES, Component
from ebmcore.energy import Energy
from ebmcore.testing.energy_checks import check_energy

#: The ``Component.data_shape`` values, each also the keyword the shape is passed by.
DATA_SHAPE_KEYWORDS: tuple[str, ...] = DATA_SHAPES

#: What :func:`check_model` and :func:`build_model` accept as the model: its component, its
#: registered name, or its class or factory.
ModelTarget = Component | str | Callable[..., Energy]


def build_model(target: ModelTarget, event_shape: Sequence[int], *,
                data_shape: str | None = None, params: Mapping[str, Any] | None = None
                ) -> Energy:
    """Build a model for data of ``event_shape`` the way the core does.

    Args:
        target: The model's :class:`ebmcore.Component` (its ``data_shape`` field is used), its
            registered name (looked up in the active registry) or its class or factory.
        event_shape: The shape of one data point.
        data_shape: ``"dim"`` (pass the flat size as ``dim=``), ``"event_shape"`` (pass the
            tuple as ``event_shape=``) or ``None`` (pass nothing); overrides the component's.
        params: Further constructor keywords.
    """
    shape = tuple(int(s) for s in event_shape)
    target = _component(target)
    if isinstance(target, Component):
        data_shape = target.data_shape if data_shape is None else data_shape
        factory = target.resolve()
    else:
        factory = target
    if data_shape is not None and data_shape not in DATA_SHAPE_KEYWORDS:
        raise ValueError(f"data_shape must be one of {DATA_SHAPE_KEYWORDS} or None, "
                         f"got {data_shape!r}")
    kwargs = dict(params or {})
    if data_shape == "dim":
        kwargs["dim"] = math.prod(shape)
    elif data_shape == "event_shape":
        kwargs["event_shape"] = shape
    return factory(**kwargs)


def check_model(target: ModelTarget, event_shape: Sequence[int], *,
                data_shape: str | None = None, params: Mapping[str, Any] | None = None,
                other_shape: Sequence[int] | None = None,
                generator: torch.Generator | None = None) -> Energy:
    """Check that a model honours the model contract, and return the model it built.

    Checks, in order: :func:`build_model` gives an :class:`ebmcore.Energy` whose declared
    ``event_shape`` is ``event_shape``, and so does ``other_shape`` (default: one more
    feature) when ``data_shape`` passes the shape; the model has trainable parameters; a
    confinement it declares unfitted (``confinement_fitted``) is fitted with
    ``fit_confinement`` on standard normal data; :func:`ebmcore.testing.check_energy` passes
    (output ``(B,)``, ``grad`` against autograd, dtypes, devices); the energy's sum
    back-propagates to finite parameter gradients, at least one non-zero; ``.double()``
    converts every parameter and the outputs follow; a ``state_dict`` loaded into a fresh
    model gives the same energies.

    Args:
        target: The model's :class:`ebmcore.Component`, registered name, or class or factory.
        event_shape: The data's shape to build for, e.g. ``(2,)``.
        data_shape: How the shape is passed (see :func:`build_model`); default the
            component's ``data_shape``.
        params: Further constructor keywords (small widths keep the check fast).
        other_shape: A second shape the model must build for.
        generator: Seeds the test points (default ``torch.Generator().manual_seed(0)``).

    Raises:
        AssertionError: When the model breaks the contract; the message says how.
    """
    shape = tuple(int(s) for s in event_shape)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    target = _component(target)
    if isinstance(target, Component) and data_shape is None:
        data_shape = target.data_shape
    model = _built(target, shape, data_shape, params)
    if data_shape is not None:
        other = tuple(other_shape) if other_shape is not None else (*shape[:-1], shape[-1] + 1)
        _built(target, other, data_shape, params)
    name = type(model).__name__
    if not any(p.requires_grad for p in model.parameters()):
        raise AssertionError(f"{name} has no trainable parameters; a model is learnt")
    data = torch.randn(256, *shape, generator=gen)
    if not model.confinement_fitted:
        model.fit_confinement(data)
        if not model.confinement_fitted:
            raise AssertionError(f"{name}.fit_confinement(data) left confinement_fitted False")
    check_energy(model, shape, generator=gen)
    x = torch.randn(7, *shape, generator=gen)
    _check_parameter_gradients(model, x)
    _check_double(model, x)
    _check_state_round_trip(target, model, shape, data_shape, params, x)
    return model


# -- helpers ---------------------------------------------------------------------------------

def _component(target: ModelTarget) -> Component | Callable[..., Energy]:
    if isinstance(target, str):
        from ebmcore.registry import get_registry

        return get_registry().component("model", target)[0]
    return target


def _built(target: Any, shape: tuple[int, ...], data_shape: str | None,
           params: Mapping[str, Any] | None) -> Energy:
    model = build_model(target, shape, data_shape=data_shape, params=params)
    if not isinstance(model, Energy):
        raise AssertionError(f"the model factory returned {type(model).__name__}, not an "
                             f"ebmcore.Energy")
    if model.event_shape is not None and tuple(model.event_shape) != shape:
        raise AssertionError(f"{type(model).__name__} built for data of shape {shape} (passed "
                             f"as {data_shape!r}) declares event_shape "
                             f"{tuple(model.event_shape)}")
    return model


def _check_parameter_gradients(model: Energy, x: torch.Tensor) -> None:
    name = type(model).__name__
    clone = copy.deepcopy(model)
    clone.zero_grad()
    clone(x).sum().backward()
    grads = [p.grad for p in clone.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        raise AssertionError(f"{name}: the energy's sum back-propagates to no parameter")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise AssertionError(f"{name}: non-finite parameter gradients")
    if not any(bool((g != 0).any()) for g in grads):
        raise AssertionError(f"{name}: every parameter gradient is zero")


def _check_double(model: Energy, x: torch.Tensor) -> None:
    name = type(model).__name__
    double = copy.deepcopy(model).double()
    kept = [n for n, p in double.named_parameters() if p.dtype != torch.float64]
    if kept:
        raise AssertionError(f"{name}.double() left parameters {kept} in another dtype")
    with torch.no_grad():
        e = double(x.double())
    if e.dtype != torch.float64:
        raise AssertionError(f"{name} in float64 returned {e.dtype} energies")


def _check_state_round_trip(target: Any, model: Energy, shape: tuple[int, ...],
                            data_shape: str | None, params: Mapping[str, Any] | None,
                            x: torch.Tensor) -> None:
    name = type(model).__name__
    fresh = _built(target, shape, data_shape, params)
    try:
        fresh.load_state_dict(model.state_dict())
    except Exception as exc:
        raise AssertionError(f"{name}: a fresh model does not load the state_dict of a built "
                             f"one: {exc}") from exc
    with torch.no_grad():
        a, b = model(x), fresh(x)
    if not torch.equal(a, b):
        raise AssertionError(f"{name}: a fresh model loaded with another's state_dict gives "
                             f"other energies (max deviation {float((a - b).abs().max()):.3g});"
                             f" some state does not travel in state_dict")
