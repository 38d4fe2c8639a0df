"""Tests of the parameter schedules."""

from __future__ import annotations

import math

import pytest
from ebmcore_samplers import schedules
from ebmcore_samplers.schedules import (
    Constant,
    Cosine,
    Exponential,
    Polynomial,
    as_schedule,
    from_state_dict,
)


def test_constant_is_constant() -> None:
    s = schedules.constant(0.3)
    assert [s(t) for t in (0, 1, 10**6)] == [0.3, 0.3, 0.3]


@pytest.mark.parametrize("cls", [Exponential, Polynomial, Cosine])
def test_interpolating_schedules_hit_their_end_points_and_stay(cls: type) -> None:
    s = cls(1.0, 0.01, steps=100)
    assert s(0) == pytest.approx(1.0)
    assert s(100) == pytest.approx(0.01)
    assert s(10_000) == pytest.approx(0.01)
    values = [s(t) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # monotone decay


def test_closed_forms_at_midpoint() -> None:
    assert Exponential(1.0, 0.01, 100)(50) == pytest.approx(0.1)
    assert Polynomial(1.0, 0.0, 100)(50) == pytest.approx(0.5)
    assert Polynomial(1.0, 0.0, 100, power=2.0)(50) == pytest.approx(0.25)
    assert Cosine(1.0, 0.0, 100)(50) == pytest.approx(0.5)
    assert Cosine(1.0, 0.0, 100)(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize("s", [Constant(2.0), Exponential(1.0, 0.1, 7),
                               Polynomial(1.0, 0.5, 9, 3.0), Cosine(0.2, 0.1, 4)])
def test_state_dict_round_trip(s: schedules.Schedule) -> None:
    back = from_state_dict(s.state_dict())
    assert back == s and type(back) is type(s)
    assert [back(t) for t in range(12)] == [s(t) for t in range(12)]


def test_from_state_dict_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="schedule"):
        from_state_dict({"kind": "sawtooth"})


def test_as_schedule_wraps_numbers_and_names_the_parameter() -> None:
    assert as_schedule("step_size", 0.5) == Constant(0.5)
    with pytest.raises(ValueError, match="step_size"):
        as_schedule("step_size", 0.0)
    with pytest.raises(ValueError, match="step_size"):
        as_schedule("step_size", -1.0)
    with pytest.raises(TypeError, match="step_size"):
        as_schedule("step_size", "big")
    # A schedule that reaches zero is refused for a positive parameter...
    with pytest.raises(ValueError, match="step_size"):
        as_schedule("step_size", Polynomial(1.0, 0.0, 10))
    # ...but accepted where zero is allowed.
    assert as_schedule("noise_scale", Polynomial(1.0, 0.0, 10), allow_zero=True)(10) == 0.0


@pytest.mark.parametrize(("args", "name"), [((0.0, 1.0, 10), "start"), ((1.0, -1.0, 10), "end"),
                                            ((1.0, 0.1, 0), "steps")])
def test_exponential_validates(args: tuple, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Exponential(*args)
