"""Conformance checks for losses: seeding, a finite scalar with gradients, state round trips.

Plugin authors call :func:`check_loss` from their own tests::

    from ebmcore.testing import KnownAnswer, check_loss

    def test_my_loss():
        check_loss(MyLoss(), model=my_small_model(dim=2), data=torch.randn(64, 2))

Every failure raises an ``AssertionError`` that says which property broke.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ebmcore.energy import Energy
from ebmcore.field import Field
from ebmcore.loss import Loss, LossOutput


@dataclass(frozen=True)
class KnownAnswer:
    """A case where the loss's value is known in closed form.

    Attributes:
        model: The energy the loss is evaluated on (a Gaussian with a known score, say).
        data: The data batch.
        expected: The loss value the case must give, or a function ``expected(generator)``
            of a generator seeded like the loss's, for losses that draw random numbers (it
            redraws the same numbers to compute the answer).
        rtol: Relative tolerance.
        atol: Absolute tolerance.
        seed: Seed of the generator handed to the loss with ``set_generator``.
    """

    model: Energy
    data: torch.Tensor
    expected: float | Callable[[torch.Generator], float]
    rtol: float = 1e-6
    atol: float = 1e-8
    seed: int = 0


def check_loss(loss: Loss, model: Energy, data: torch.Tensor, *,
               known_answers: tuple[KnownAnswer, ...] = (), seed: int = 0,
               steps: int = 2) -> None:
    """Check that ``loss`` honours the :class:`ebmcore.Loss` contract.

    Checks, in order: ``loss(model, data)`` returns a :class:`ebmcore.LossOutput` whose
    ``loss`` is a finite 0-d tensor, whose metrics are numbers or 0-d tensors and whose
    ``negatives`` (when drawn) have the data's event shape; ``loss.backward()`` reaches the
    model's parameters with finite gradients and at least one non-zero; two copies seeded
    alike with ``set_generator`` give the same bits over ``steps`` calls, and the loss never
    draws from torch's global generator; ``chain_counts`` name integer (or ``None``) attributes and
    ``sharded_state`` name ``state_dict`` entries; a ``state_dict`` taken after ``steps``
    calls loads into a fresh copy (persistent chains included, see
    :meth:`ebmcore.Loss.persistent_chains`), after which both copies give the same next
    loss; every :class:`KnownAnswer` matches.

    The loss and model are never modified: each part runs on deep copies.

    Args:
        loss: The loss to check, as constructed (before any call).
        model: A small model the loss trains (any :class:`ebmcore.Energy`, or
            :class:`ebmcore.field.Field` for a field loss, with parameters).
        data: A data batch ``(B, *event_shape)``.
        known_answers: Cases whose loss value is known in closed form.
        seed: Seed of the generators handed to the loss.
        steps: Calls made before comparing states (persistent chains fill on the first).

    Raises:
        AssertionError: When the loss breaks the contract; the message says how.
        TypeError: When an argument has the wrong type.
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be an ebmcore.Loss, got {type(loss).__name__}")
    if not isinstance(model, (Energy, Field)):  # field losses train an ebmcore.Field
        raise TypeError(f"model must be an ebmcore.Energy or an ebmcore.Field, got "
                        f"{type(model).__name__}")
    if not isinstance(data, torch.Tensor) or data.ndim < 2 or not data.is_floating_point():
        raise TypeError("data must be a floating-point tensor (B, *event_shape)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    global_state = torch.get_rng_state()
    try:
        _check_seeding(loss, model, data, seed, steps)
        _check_output_and_gradients(loss, model, data, seed)
        _check_declarations(loss)
        _check_state_round_trip(loss, model, data, seed, steps)
        for i, case in enumerate(known_answers):
            _check_known_answer(loss, case, i)
    finally:  # a failing loss may have drawn from it; leave the caller's stream as it was
        torch.set_rng_state(global_state)


# -- helpers ---------------------------------------------------------------------------------

def _name(loss: Any) -> str:
    return type(loss).__name__


def _fail(loss: Any, what: str) -> AssertionError:
    return AssertionError(f"{_name(loss)}: {what}")


def _copies(loss: Loss, model: Energy, seed: int) -> tuple[Loss, Energy]:
    loss_, model_ = copy.deepcopy(loss), copy.deepcopy(model)
    loss_.set_generator(torch.Generator(device=_device_of(model, loss)).manual_seed(seed))
    return loss_, model_


def _device_of(model: Energy, loss: Loss) -> torch.device:
    for tensor in [*model.parameters(), *loss.parameters()]:
        return tensor.device
    return torch.device("cpu")


def _call(loss: Loss, model: Energy, data: torch.Tensor) -> LossOutput:
    out = loss(model, data)
    if not isinstance(out, LossOutput):
        raise _fail(loss, f"forward returned {type(out).__name__}, not an ebmcore.LossOutput")
    return out


def _check_output_and_gradients(loss: Loss, model: Energy, data: torch.Tensor,
                                seed: int) -> None:
    loss_, model_ = _copies(loss, model, seed)
    out = _call(loss_, model_, data)
    value = out.loss
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise _fail(loss, f"LossOutput.loss must be a 0-d tensor, got {got}")
    if not bool(torch.isfinite(value)):
        raise _fail(loss, f"the loss is not finite: {float(value.detach())!r}")
    for key, metric in out.metrics.items():
        is_number = isinstance(metric, (int, float)) and not isinstance(metric, bool)
        if not (is_number or (isinstance(metric, torch.Tensor) and metric.ndim == 0)):
            raise _fail(loss, f"metric {key!r} must be a number or a 0-d tensor, "
                              f"got {type(metric).__name__}")
    if out.negatives is not None and tuple(out.negatives.shape[1:]) != tuple(data.shape[1:]):
        raise _fail(loss, f"negatives have event shape {tuple(out.negatives.shape[1:])}, the "
                          f"data {tuple(data.shape[1:])}")
    params = [p for p in model_.parameters() if p.requires_grad]
    if not params:
        raise AssertionError(f"the model {type(model).__name__} has no trainable parameters; "
                             f"check_loss needs one that does")
    if not value.requires_grad:
        raise _fail(loss, "the loss does not depend on the model's parameters (no graph)")
    value.backward()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        raise _fail(loss, "loss.backward() reached none of the model's parameters")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise _fail(loss, "loss.backward() gave non-finite parameter gradients")
    if not any(bool((g != 0).any()) for g in grads):
        raise _fail(loss, "every parameter gradient is zero")


def _run(loss: Loss, model: Energy, data: torch.Tensor, steps: int) -> list[LossOutput]:
    return [_call(loss, model, data) for _ in range(steps)]


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a.detach(), b.detach()))


def _check_seeding(loss: Loss, model: Energy, data: torch.Tensor, seed: int,
                   steps: int) -> None:
    torch.manual_seed(12345)  # a known global state, to see whether the loss draws from it
    probe = torch.get_rng_state()
    first = _run(*_copies(loss, model, seed), data, steps)
    if not torch.equal(torch.get_rng_state(), probe):
        raise _fail(loss, "it draws from torch's global generator; draw every random number "
                          "from the generator set with set_generator")
    second = _run(*_copies(loss, model, seed), data, steps)
    for k, (a, b) in enumerate(zip(first, second, strict=True)):
        if not _same(a.loss, b.loss) or not _same(a.negatives, b.negatives):
            raise _fail(loss, f"two copies seeded alike with set_generator differ at call "
                              f"{k + 1}: {float(a.loss.detach())!r} vs "
                              f"{float(b.loss.detach())!r}")


def _check_declarations(loss: Loss) -> None:
    for attr in loss.chain_counts:
        if not hasattr(loss, attr):
            raise _fail(loss, f"chain_counts names {attr!r}, which is not an attribute")
        value = getattr(loss, attr)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise _fail(loss, f"chain_counts names {attr!r}, which must be a non-negative int "
                              f"(or None: as many as the batch), got {value!r}")
    entries = {key.rsplit(".", 1)[-1] for key in loss.state_dict()}
    missing = [name for name in loss.sharded_state if name not in entries]
    if missing:
        raise _fail(loss, f"sharded_state names {missing}, which are not state_dict entries "
                          f"(it has {sorted(entries)})")


def _check_state_round_trip(loss: Loss, model: Energy, data: torch.Tensor, seed: int,
                            steps: int) -> None:
    trained, model_ = _copies(loss, model, seed)
    _run(trained, model_, data, steps)
    state = copy.deepcopy(trained.state_dict())
    fresh = copy.deepcopy(loss)
    try:
        fresh.load_state_dict(state)
    except Exception as exc:
        raise _fail(loss, f"load_state_dict of its own state_dict (after {steps} calls) "
                          f"failed on a fresh copy: {exc}") from exc
    reloaded = fresh.state_dict()
    if set(reloaded) != set(state):
        raise _fail(loss, f"state_dict keys changed in the round trip: {sorted(state)} -> "
                          f"{sorted(reloaded)}")
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and not _same(value, reloaded[key]):
            raise _fail(loss, f"state_dict entry {key!r} changed in the round trip")
    if not _same(trained.persistent_chains(), fresh.persistent_chains()):
        raise _fail(loss, "persistent_chains() differ after a state_dict round trip; register "
                          "the chains as a buffer so that they travel in state_dict")
    # The next step of both must agree: that is what an exact resume needs.
    device = _device_of(model, loss)
    trained.set_generator(torch.Generator(device=device).manual_seed(seed + 1))
    fresh.set_generator(torch.Generator(device=device).manual_seed(seed + 1))
    a = _call(trained, copy.deepcopy(model_), data)
    b = _call(fresh, copy.deepcopy(model_), data)
    if not _same(a.loss, b.loss) or not _same(a.negatives, b.negatives):
        raise _fail(loss, f"after a state_dict round trip the next loss differs "
                          f"({float(a.loss.detach())!r} vs {float(b.loss.detach())!r}): "
                          f"some state does not "
                          f"travel in state_dict")


def _check_known_answer(loss: Loss, case: KnownAnswer, index: int) -> None:
    if not isinstance(case, KnownAnswer):
        raise TypeError(f"known_answers[{index}] must be a KnownAnswer, "
                        f"got {type(case).__name__}")
    loss_, model_ = _copies(loss, case.model, case.seed)
    got = float(_call(loss_, model_, case.data).loss.detach())
    expected = case.expected
    if callable(expected):
        expected = expected(torch.Generator(device=_device_of(model_, loss_))
                            .manual_seed(case.seed))
    expected = float(expected)
    if not abs(got - expected) <= case.atol + case.rtol * abs(expected):
        raise _fail(loss, f"known answer {index}: loss {got!r}, expected {expected!r} "
                          f"(rtol={case.rtol:g}, atol={case.atol:g})")
