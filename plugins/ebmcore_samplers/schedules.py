"""Parameter schedules: a value that changes with the step number, callable as ``schedule(step)``.

Any sampler parameter documented as "float or schedule" accepts one of these, for example a
step size that decays over the run::

    from ebmcore_samplers import schedules
    sampler = ebmcore.create("sampler", "langevin",
                             step_size=schedules.Exponential(1e-2, 1e-4, steps=1000))

The step counts every call to ``Sampler.step`` from ``init``, burn-in included. Past ``steps``
the value stays at ``end``. Schedules are plain data: :meth:`Schedule.state_dict` and
:func:`from_state_dict` round-trip them through checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

from ebmcore.validation import check_int, check_positive


class Schedule:
    """Base class: a deterministic value per step. Subclasses implement :meth:`value`."""

    #: Name stored in :meth:`state_dict` and used by :func:`from_state_dict`.
    kind: str = ""

    def value(self, step: int) -> float:  # pragma: no cover - abstract
        """Return the value at ``step`` (0-based)."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        """Return the value at ``step`` (0-based)."""
        return self.value(step)

    def params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Return the constructor arguments."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"kind": ..., **params}``, enough to rebuild the schedule."""
        return {"kind": self.kind, **self.params()}

    def check_positive(self, name: str) -> Schedule:
        """Raise ValueError naming ``name`` unless every value the schedule takes is positive."""
        for label, v in self._extremes().items():
            if not v > 0:
                raise ValueError(f"{name} must stay positive, but its schedule's {label} is {v!r}")
        return self

    def _extremes(self) -> dict[str, float]:
        return {"value": self.value(0)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.state_dict() == other.state_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.state_dict().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class Constant(Schedule):
    """The same value at every step.

    Args:
        value: The value.
    """

    kind = "constant"

    def __init__(self, value: float) -> None:
        self.v = _finite("value", value)

    def value(self, step: int) -> float:
        """Return the constant."""
        return self.v

    def params(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"value": self.v}


class _Interpolating(Schedule):
    """Shared validation for schedules that go from ``start`` to ``end`` over ``steps``."""

    def __init__(self, start: float, end: float, steps: int) -> None:
        self.start = _finite("start", start)
        self.end = _finite("end", end)
        self.steps = check_int("steps", steps, minimum=1)

    def _fraction(self, step: int) -> float:
        return min(max(step, 0), self.steps) / self.steps

    def _extremes(self) -> dict[str, float]:
        return {"start": self.start, "end": self.end}

    def params(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {"start": self.start, "end": self.end, "steps": self.steps}


class Exponential(_Interpolating):
    """Geometric interpolation ``start * (end / start) ** (step / steps)``, then ``end``.

    Args:
        start: Value at step 0 (positive).
        end: Value from step ``steps`` on (positive).
        steps: Number of steps the decay takes.
    """

    kind = "exponential"

    def __init__(self, start: float, end: float, steps: int) -> None:
        super().__init__(start, end, steps)
        check_positive("start", self.start)
        check_positive("end", self.end)

    def value(self, step: int) -> float:
        """Return the value at ``step``."""
        return self.start * (self.end / self.start) ** self._fraction(step)


class Polynomial(_Interpolating):
    """Polynomial decay ``end + (start - end) * (1 - step / steps) ** power``, then ``end``.

    Args:
        start: Value at step 0.
        end: Value from step ``steps`` on.
        steps: Number of steps the decay takes.
        power: Exponent; ``1`` is linear.
    """

    kind = "polynomial"

    def __init__(self, start: float, end: float, steps: int, power: float = 1.0) -> None:
        super().__init__(start, end, steps)
        self.power = check_positive("power", power)

    def value(self, step: int) -> float:
        """Return the value at ``step``."""
        return self.end + (self.start - self.end) * (1.0 - self._fraction(step)) ** self.power

    def params(self) -> dict[str, Any]:
        """Return the constructor arguments."""
        return {**super().params(), "power": self.power}


class Cosine(_Interpolating):
    """Half-cosine ``end + (start - end) * (1 + cos(pi * step / steps)) / 2``, then ``end``.

    Args:
        start: Value at step 0.
        end: Value from step ``steps`` on.
        steps: Number of steps the decay takes.
    """

    kind = "cosine"

    def value(self, step: int) -> float:
        """Return the value at ``step``."""
        return self.end + (self.start - self.end) * 0.5 * (
            1.0 + math.cos(math.pi * self._fraction(step)))


constant = Constant
exponential = Exponential
polynomial = Polynomial
cosine = Cosine

_KINDS: dict[str, type[Schedule]] = {
    cls.kind: cls for cls in (Constant, Exponential, Polynomial, Cosine)}


def from_state_dict(state: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.state_dict`.

    Args:
        state: A dictionary with ``kind`` and the constructor arguments.
    """
    if not isinstance(state, dict) or state.get("kind") not in _KINDS:
        raise ValueError(
            f"not a schedule state dict (expected 'kind' in {sorted(_KINDS)}): {state!r}")
    params = {k: v for k, v in state.items() if k != "kind"}
    return _KINDS[state["kind"]](**params)


def as_schedule(name: str, value: Any, *, positive: bool = True,
                allow_zero: bool = False) -> Schedule:
    """Return ``value`` as a schedule, wrapping a number in :class:`Constant`.

    Args:
        name: The parameter's name, used in error messages.
        value: A number, a :class:`Schedule`, or a schedule state dict.
        positive: Require every value to be positive.
        allow_zero: With ``positive``, also accept zero.
    """
    if isinstance(value, dict):
        value = from_state_dict(value)
    if isinstance(value, Schedule):
        if positive and not allow_zero:
            value.check_positive(name)
        elif positive:
            for label, v in value._extremes().items():
                if v < 0:
                    raise ValueError(f"{name} must stay non-negative, but its schedule's "
                                     f"{label} is {v!r}")
        return value
    if positive:
        return Constant(check_positive(name, value, allow_zero=allow_zero))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number or a schedule, got {type(value).__name__}")
    return Constant(_finite(name, value))
