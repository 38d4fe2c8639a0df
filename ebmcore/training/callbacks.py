"""Callbacks: user code a trainer runs after every step, and how they are checked.

A callback is any callable ``callback(trainer, output)``; it may read the trainer (its step,
history, model, loss) and call :meth:`~ebmcore.training.Trainer.request_stop`. Runs use one
to draw the replay buffer's pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ebmcore.loss import LossOutput

if TYPE_CHECKING:
    from ebmcore.training.loop import Trainer

#: A callback runs after every step as ``callback(trainer, output)``.
Callback = Callable[["Trainer", LossOutput], Any]


def check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
    """Return ``callbacks`` as a tuple after checking each is callable.

    Raises:
        TypeError: When ``callbacks`` is a single callable or a string rather than a
            sequence, or one of them is not callable (naming its index).
    """
    if callable(callbacks) or isinstance(callbacks, (str, bytes)):
        raise TypeError("callbacks must be a sequence of callables, e.g. (my_callback,)")
    callbacks = tuple(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}] must be callable, got {type(cb).__name__}")
    return callbacks


def run_callbacks(callbacks: Sequence[Callback], trainer: Trainer, output: LossOutput) -> None:
    """Run each callback after a step, in order."""
    for callback in callbacks:
        callback(trainer, output)
