"""Property-based tests of the built-in samplers (hypothesis).

For random chain counts, dimensions, step counts, thinning and burn-in, and random valid
sampler settings, ``Sampler.sample`` returns samples shaped like ``x0``, a trajectory
``(n_steps // thin, B, D)`` when asked, the same bits for the same seed, and leaves ``x0``
alone; invalid settings and arguments raise the documented TypeError / ValueError naming
the argument, at construction or at call time. Every run uses the torch backend: the fused
backends compile numba kernels on first use, which would dominate the run time here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ebmcore

#: On top of the suite's hypothesis profile (tests/conftest.py).
SETTINGS = settings(max_examples=30)
NO_SHRINK = settings(SETTINGS, phases=[Phase.explicit, Phase.generate])


# -- strategies ---------------------------------------------------------------------------------

step = st.floats(1e-3, 0.3, allow_subnormal=False)
positive = st.floats(0.2, 5.0, allow_subnormal=False)


@st.composite
def langevin(draw: st.DrawFn, d: int) -> dict[str, Any]:
    params: dict[str, Any] = {"step_size": draw(step),
                              "noise_scale": draw(st.floats(0.0, 2.0))}
    if draw(st.booleans()):
        params["grad_clip"] = draw(positive)
    if draw(st.booleans()):
        lo = draw(st.floats(-10.0, -1.0))
        params["clamp"] = (lo, lo + draw(st.floats(1.0, 20.0)))
    return params


@st.composite
def mala(draw: st.DrawFn, d: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "step_size": draw(st.none() | step), "adapt_step_size": draw(st.booleans()),
        "target_accept": draw(st.floats(0.2, 0.9)), "jitter": draw(st.floats(0.0, 0.9)),
        "adapt_mass": draw(st.sampled_from([None, "diag", "dense"]))}
    if draw(st.booleans()):
        params["mass"] = draw(st.lists(positive, min_size=d, max_size=d))
    return params


@st.composite
def hmc(draw: st.DrawFn, d: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "step_size": draw(st.none() | step), "n_leapfrog": draw(st.integers(1, 4)),
        "jitter": draw(st.floats(0.0, 0.9)), "adapt_step_size": draw(st.booleans()),
        "adapt_mass": draw(st.sampled_from([None, "diag", "dense"])),
        "target_accept": draw(st.floats(0.2, 0.95))}
    if draw(st.booleans()):
        params["mass"] = draw(st.lists(positive, min_size=d, max_size=d))
    return params


@st.composite
def underdamped(draw: st.DrawFn, d: int) -> dict[str, Any]:
    return {"step_size": draw(step), "friction": draw(positive), "mass": draw(positive)}


@st.composite
def nuts(draw: st.DrawFn, d: int) -> dict[str, Any]:
    return {"step_size": draw(st.none() | step), "max_tree_depth": draw(st.integers(1, 4)),
            "target_accept": draw(st.floats(0.2, 0.95)), "adapt_mass": draw(st.booleans()),
            "adapt_step_size": draw(st.booleans())}


@st.composite
def tempering(draw: st.DrawFn, d: int) -> dict[str, Any]:
    gaps = draw(st.lists(st.floats(0.1, 3.0), min_size=1, max_size=3))
    return {"base": "langevin", "base_params": {"step_size": draw(step)},
            "temperatures": [1.0, *np.cumsum([1.0, *gaps])[1:].tolist()],
            "swap_every": draw(st.integers(1, 3))}


SAMPLERS = {"langevin": langevin, "mala": mala, "hmc": hmc,
            "underdamped_langevin": underdamped, "nuts": nuts, "parallel_tempering": tempering}
NAMES = sorted(SAMPLERS)

#: Targets with a dimension: name -> parameters of the dimension.
TARGETS = {"harmonic": lambda d: {"dim": d, "stiffness": 1.5},
           "double_well": lambda d: {"dim": d, "barrier": 1.0},
           "gaussian_mixture": lambda d: {"means": [[-1.0] * d, [1.0] * d], "covs": 0.5}}


@st.composite
def runs(draw: st.DrawFn, name: str | None = None) -> dict[str, Any]:
    """A sampler (``name``, else any), a target and the arguments of one ``sample`` call."""
    name = name or draw(st.sampled_from(NAMES))
    d = draw(st.integers(1, 4))
    b = draw(st.integers(1, 50))
    n_steps = draw(st.integers(1, 20))
    return {
        "name": name, "params": draw(SAMPLERS[name](d)),
        "target": draw(st.sampled_from(sorted(TARGETS))), "dim": d,
        "x0": draw(hnp.arrays(np.float64, (b, d), elements=st.floats(-2.0, 2.0))),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "n_steps": n_steps, "thin": draw(st.integers(1, n_steps + 2)),
        "burn_in": draw(st.integers(0, 10)), "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _setup(run: dict[str, Any]) -> tuple[Any, Any, torch.Tensor]:
    sampler = ebmcore.create("sampler", run["name"], **run["params"])
    energy = ebmcore.create("energy", run["target"], **TARGETS[run["target"]](run["dim"]))
    x0 = torch.from_numpy(run["x0"]).to(run["dtype"])
    return sampler, energy.to(run["dtype"]), x0


def _sample(sampler: Any, energy: Any, x0: torch.Tensor, run: dict[str, Any],
            **kwargs: Any) -> Any:
    return sampler.sample(energy, x0, run["n_steps"], burn_in=run["burn_in"], thin=run["thin"],
                          generator=torch.Generator().manual_seed(run["seed"]),
                          backend="torch", **kwargs)


def same_bits(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Bit-for-bit equality, NaN included (chains that diverged are compared too)."""
    if a is None or b is None:
        return a is b
    as_int = {torch.float32: torch.int32, torch.float64: torch.int64}[a.dtype]
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.view(as_int),
                                                                     b.view(as_int))


# -- properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(SETTINGS, max_examples=25)
@given(data=st.data())
def test_sample_shapes_determinism_and_x0(name, data) -> None:
    """Samples are shaped like ``x0``; the trajectory is ``(n_steps // thin, B, D)``; the same
    seed gives the same bits; ``x0`` is never modified."""
    run = data.draw(runs(name))
    sampler, energy, x0 = _setup(run)
    before = x0.clone()
    first = _sample(sampler, energy, x0, run, return_trajectory=True)
    assert first.samples.shape == x0.shape and first.samples.dtype == x0.dtype
    b, d = x0.shape
    assert first.trajectory is not None
    assert first.trajectory.shape == (run["n_steps"] // run["thin"], b, d)
    assert first.trajectory.dtype == x0.dtype
    if run["n_steps"] // run["thin"] > 0:
        # the last kept step is the final state when n_steps is a multiple of thin
        last = (run["n_steps"] // run["thin"]) * run["thin"]
        if last == run["n_steps"]:
            assert same_bits(first.trajectory[-1], first.samples)
    assert torch.equal(x0, before), "sample() modified x0"

    # A fresh sampler (adaptation state is per run anyway) and the same seed: the same bits.
    again = _sample(ebmcore.create("sampler", run["name"], **run["params"]), energy, x0, run,
                    return_trajectory=True)
    assert same_bits(first.samples, again.samples)
    assert same_bits(first.trajectory, again.trajectory)
    assert torch.equal(x0, before)

    # The first sampler again, without a trajectory: nothing recorded, the same samples.
    plain = _sample(sampler, energy, x0, run)
    assert plain.trajectory is None
    assert same_bits(plain.samples, first.samples)

    nonfinite = first.diagnostics["nonfinite_chains"]
    finite_rows = torch.isfinite(first.samples).all(1)
    assert set(nonfinite.tolist()) >= set(torch.nonzero(~finite_rows).flatten().tolist())


@pytest.mark.parametrize("name", NAMES)
@settings(SETTINGS, max_examples=8)
@given(data=st.data())
def test_trace_chains_records_every_stride_th_chain(name, data) -> None:
    """``trace_chains=C`` records chains ``0, s, 2s, ...`` of the full trajectory."""
    run = data.draw(runs(name))
    sampler, energy, x0 = _setup(run)
    c = data.draw(st.integers(1, x0.shape[0] + 3))
    full = _sample(sampler, energy, x0, run, return_trajectory=True)
    part = _sample(ebmcore.create("sampler", run["name"], **run["params"]), energy, x0, run,
                   return_trajectory=True, trace_chains=c)
    s = max(1, math.ceil(x0.shape[0] / c))
    assert part.diagnostics["trajectory_stride"] == s
    assert part.trajectory.shape == (run["n_steps"] // run["thin"], -(-x0.shape[0] // s),
                                     x0.shape[1])
    assert same_bits(part.trajectory, full.trajectory[:, ::s].contiguous())
    assert same_bits(part.samples, full.samples)


# -- invalid settings: construction time ----------------------------------------------------------

bad_step = st.one_of(st.floats(max_value=0.0, allow_nan=False),
                     st.sampled_from([math.nan, math.inf, -math.inf]))
wrong_type = st.one_of(st.booleans(), st.text(max_size=3), st.lists(step, max_size=2))

STEP_SIZED = ["langevin", "mala", "hmc", "underdamped_langevin", "nuts"]


@SETTINGS
@given(name=st.sampled_from(STEP_SIZED), value=bad_step)
def test_bad_step_size_raises_at_construction(name, value) -> None:
    with pytest.raises(ValueError, match=r"^step_size must be a finite positive number"):
        ebmcore.create("sampler", name, step_size=value)


@SETTINGS
@given(name=st.sampled_from(STEP_SIZED), value=wrong_type)
def test_step_size_of_wrong_type_raises_type_error(name, value) -> None:
    with pytest.raises(TypeError, match=r"^step_size must be"):
        ebmcore.create("sampler", name, step_size=value)


BAD_SETTINGS = [
    ("langevin", "noise_scale", st.floats(max_value=-1e-9) | st.just(math.nan), ValueError),
    ("langevin", "grad_clip", bad_step, ValueError),
    ("mala", "target_accept", st.floats(max_value=0.0) | st.floats(min_value=1.0), ValueError),
    ("hmc", "n_leapfrog", st.integers(max_value=0), ValueError),
    ("hmc", "jitter", st.floats(min_value=1.0) | st.floats(max_value=-1e-9), ValueError),
    ("hmc", "adapt_mass", st.text(max_size=3), ValueError),
    ("underdamped_langevin", "friction", bad_step, ValueError),
    ("underdamped_langevin", "mass", bad_step, ValueError),
    ("nuts", "max_tree_depth", st.integers(max_value=0), ValueError),
    ("nuts", "max_energy_error", bad_step, ValueError),
    ("nuts", "adapt_mass", st.integers(0, 1), TypeError),
]


@pytest.mark.parametrize("name,param,values,exc", BAD_SETTINGS,
                         ids=[f"{n}-{p}" for n, p, _, _ in BAD_SETTINGS])
@settings(SETTINGS, max_examples=10)
@given(data=st.data())
def test_bad_setting_raises_naming_it(name, param, values, exc, data) -> None:
    value = data.draw(values)
    params: dict[str, Any] = {} if name == "nuts" else {"step_size": 0.1}
    params[param] = value
    with pytest.raises(exc, match=rf"^{param} must"):
        ebmcore.create("sampler", name, **params)


# -- invalid arguments: call time ---------------------------------------------------------------

CALL_ERRORS = {
    "thin": (lambda d: d.draw(st.integers(max_value=0)), ValueError, r"^thin must be at least 1"),
    "burn_in": (lambda d: d.draw(st.integers(max_value=-1)), ValueError,
                r"^burn_in must be at least 0"),
    "n_steps": (lambda d: d.draw(st.integers(max_value=0)), ValueError,
                r"^n_steps must be at least 1"),
    "thin_float": (lambda d: float(d.draw(st.integers(1, 5))), TypeError,
                   r"^thin must be an integer"),
    "trace_chains": (lambda d: d.draw(st.integers(max_value=0)), ValueError,
                     r"^trace_chains must be at least 1"),
}


@pytest.mark.parametrize("arg", sorted(CALL_ERRORS))
@settings(SETTINGS, max_examples=8)
@given(run=runs(), data=st.data())
def test_bad_loop_argument_raises_naming_it(arg, run, data) -> None:
    sampler, energy, x0 = _setup(run)
    draw, exc, message = CALL_ERRORS[arg]
    kwargs: dict[str, Any] = {"n_steps": run["n_steps"], "burn_in": run["burn_in"],
                              "thin": run["thin"]}
    if arg == "trace_chains":
        kwargs["return_trajectory"] = True
    kwargs["thin" if arg == "thin_float" else arg] = draw(data)
    with pytest.raises(exc, match=message):
        sampler.sample(energy, x0, backend="torch", **kwargs)


@SETTINGS
@given(run=runs(), data=st.data())
def test_nonfinite_x0_raises_naming_x0(run, data) -> None:
    """A NaN or infinite start raises ValueError naming ``x0`` and counting the bad rows."""
    sampler, energy, x0 = _setup(run)
    bad = x0.clone()
    rows = data.draw(st.sets(st.integers(0, x0.shape[0] - 1), min_size=1))
    for r in rows:
        bad[r, data.draw(st.integers(0, x0.shape[1] - 1))] = data.draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    message = rf"^x0 contains non-finite values \(in {len(rows)} of {x0.shape[0]} rows\)"
    with pytest.raises(ValueError, match=message):
        _sample(sampler, energy, bad, run)


@SETTINGS
@given(run=runs(), kind=st.sampled_from(["integer", "event", "one_d", "numpy"]))
def test_malformed_x0_raises_naming_x0(run, kind) -> None:
    sampler, energy, x0 = _setup(run)
    if kind == "integer":
        bad, exc, message = x0.round().long(), TypeError, r"^x0 must have a floating-point"
    elif kind == "event":
        bad, exc, message = torch.cat([x0, x0[:, :1]], 1), ValueError, r"^x0 has event shape"
    elif kind == "one_d":
        bad, exc, message = x0[0], ValueError, r"^x0 must be a batch of shape"
    else:
        bad, exc, message = x0.numpy(), TypeError, r"^x0 must be a torch\.Tensor"
    with pytest.raises(exc, match=message):
        _sample(sampler, energy, bad, run)


@settings(NO_SHRINK, max_examples=5)
@given(run=runs(), generator=st.one_of(st.integers(), st.text(max_size=3),
                                       st.builds(np.random.default_rng, st.integers(0, 9))))
def test_generator_of_wrong_type_raises_type_error(run, generator) -> None:
    sampler, energy, x0 = _setup(run)
    with pytest.raises(TypeError, match=r"generator"):
        sampler.sample(energy, x0, run["n_steps"], generator=generator, backend="torch")
