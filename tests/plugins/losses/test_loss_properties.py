"""Property-based tests of the built-in losses (hypothesis).

Every built-in loss, with small random hyper-parameters and an ``mlp`` model, turns a random
finite batch of random size and dimension into a finite scalar with a gradient for the
model's parameters; a batch with a non-finite value, the wrong event shape or a
non-floating dtype raises the documented TypeError / ValueError; invalid hyper-parameters
raise at construction, naming the parameter.
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
SETTINGS = settings(max_examples=12)
NO_SHRINK = settings(SETTINGS, phases=[Phase.explicit, Phase.generate])


# -- strategies ---------------------------------------------------------------------------------

small_step = st.floats(1e-3, 0.05)


@st.composite
def contrastive(draw: st.DrawFn) -> dict[str, Any]:
    return {"k": draw(st.integers(1, 3)), "init": draw(st.sampled_from(["data", "noise"])),
            "alpha": draw(st.floats(0.0, 1.0)),
            "sampler_params": {"step_size": draw(small_step)}}


@st.composite
def persistent(draw: st.DrawFn) -> dict[str, Any]:
    params = draw(contrastive())
    params.update(buffer_size=draw(st.integers(1, 16)), reinit_prob=draw(st.floats(0.0, 1.0)),
                  n_negatives=draw(st.none() | st.integers(1, 8)))
    return params


@st.composite
def tempered(draw: st.DrawFn) -> dict[str, Any]:
    return {"k": draw(st.integers(1, 2)), "init": draw(st.sampled_from(["data", "noise"])),
            "alpha": draw(st.floats(0.0, 1.0)),
            "sampler_params": {"base": "langevin", "base_params": {"step_size": draw(small_step)},
                               "temperatures": [1.0, 1.0 + draw(st.floats(0.5, 4.0))]}}


LOSSES: dict[str, Any] = {
    "cd": contrastive(),
    "pcd": persistent(),
    "pt_cd": tempered(),
    "nce": st.fixed_dictionaries({"noise_ratio": st.floats(0.5, 3.0),
                                  "noise_scale": st.floats(0.5, 2.0),
                                  "init_log_z": st.floats(-2.0, 2.0)}),
    "score_matching": st.fixed_dictionaries({"max_dim": st.integers(4, 8)}),
    "sliced_score_matching": st.fixed_dictionaries({"n_projections": st.integers(1, 3),
                                                    "variance_reduced": st.booleans()}),
    "denoising_score_matching": st.fixed_dictionaries(
        {"sigmas": st.floats(0.01, 1.0) | st.lists(st.floats(0.01, 1.0), min_size=1,
                                                  max_size=3)}),
}
NAMES = sorted(LOSSES)
#: Losses that draw random numbers, and so take a generator.
STOCHASTIC = {"cd", "pcd", "pt_cd", "nce", "sliced_score_matching", "denoising_score_matching"}


#: Finite coordinates; none so small that float32 would flush a row to the origin.
coordinate = st.floats(-3.0, 3.0, allow_subnormal=False).filter(
    lambda v: v == 0.0 or abs(v) >= 1e-3)
#: The exact score-matching losses take second derivatives of the mlp's confining wall,
#: which are NaN at the wall's centre (see test_score_matching_at_the_wall_centre).
SECOND_ORDER = {"score_matching", "sliced_score_matching"}


@st.composite
def cases(draw: st.DrawFn, name: str, min_b: int = 1) -> dict[str, Any]:
    """Loss parameters, a model size and a finite batch ``(B, D)``.

    nce gets at least 2 points (its noise is fitted to the first batch, see
    test_nce_first_batch_of_one_point); the score-matching losses get no point at the
    origin, the centre of the unfitted wall.
    """
    d = draw(st.integers(1, 4))
    b = draw(st.integers(max(min_b, 2 if name == "nce" else 1), 9))
    x = hnp.arrays(np.float64, (b, d), elements=coordinate)
    if name in SECOND_ORDER:
        x = x.filter(lambda a: bool((np.abs(a).sum(1) > 0).all()))
    return {"params": draw(LOSSES[name]), "dim": d,
            "hidden": draw(st.lists(st.integers(2, 8), min_size=1, max_size=2)),
            "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
            "x": draw(x), "seed": draw(st.integers(0, 2**32 - 1))}


def _setup(name: str, case: dict[str, Any]) -> tuple[Any, Any, torch.Tensor]:
    params = dict(case["params"])
    if name in STOCHASTIC:
        params["generator"] = torch.Generator().manual_seed(case["seed"])
    loss = ebmcore.create("loss", name, **params)
    with torch.random.fork_rng(devices=[]):  # seeded weights; the global RNG is left alone
        torch.manual_seed(case["seed"])
        model = ebmcore.create("model", "mlp", dim=case["dim"], hidden=case["hidden"])
    model = model.to(case["dtype"])
    return loss, model, torch.from_numpy(case["x"]).to(case["dtype"])


# -- properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_loss_is_a_finite_scalar_with_parameter_gradients(name, data) -> None:
    case = data.draw(cases(name))
    loss, model, x = _setup(name, case)
    before = x.clone()
    out = loss(model, x)
    assert out.loss.shape == () and out.loss.dtype == x.dtype
    assert bool(torch.isfinite(out.loss)), out.loss
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no model parameter received a gradient"
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(bool((g != 0).any()) for g in grads), "every parameter gradient is zero"
    assert torch.equal(x, before), "the loss modified the data batch"
    if out.negatives is not None:
        assert out.negatives.shape[1:] == x.shape[1:]
    for key, value in out.metrics.items():
        assert math.isfinite(float(value)), (key, value)


@pytest.mark.parametrize("name", NAMES)
@settings(SETTINGS, max_examples=8)
@given(data=st.data())
def test_same_seed_gives_the_same_loss(name, data) -> None:
    """A fresh loss and model with the same seeds give the same value, bit for bit."""
    case = data.draw(cases(name))
    values = []
    for _ in range(2):
        loss, model, x = _setup(name, case)
        values.append(loss(model, x).loss.detach())
    assert torch.equal(values[0], values[1]), values


BAD_BATCHES = {
    "nan": (ValueError, r"^x contains non-finite values"),
    "integer": (TypeError, r"^x must have a floating-point dtype"),
    "one_d": (ValueError, r"^x must be a batch of shape"),
    "empty": (ValueError, r"^x must hold at least one point"),
    # cd and pt_cd name their chain starts (x0), which the data batch becomes; shape is named
    "event": (ValueError, r"event shape|must have shape|max_dim"),
}


@pytest.mark.parametrize("kind", sorted(BAD_BATCHES))
@pytest.mark.parametrize("name", NAMES)
@settings(SETTINGS, max_examples=4)
@given(data=st.data())
def test_bad_batch_raises_a_clear_error(name, kind, data) -> None:
    case = data.draw(cases(name))
    loss, model, x = _setup(name, case)
    if kind == "nan":
        bad = x.clone()
        bad[data.draw(st.integers(0, x.shape[0] - 1)),
            data.draw(st.integers(0, x.shape[1] - 1))] = data.draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    elif kind == "integer":
        bad = x.round().long()
    elif kind == "one_d":
        bad = x[0]
    elif kind == "empty":
        bad = x[:0]
    else:
        bad = torch.cat([x, x[:, :1]], 1)
    exc, message = BAD_BATCHES[kind]
    with pytest.raises(exc, match=message):
        loss(model, bad)


@settings(NO_SHRINK, max_examples=3)
@given(data=st.data())
def test_nce_first_batch_of_one_point(data) -> None:
    """nce fits its noise to the first batch: one point is refused, not a NaN loss."""
    case = data.draw(cases("nce"))
    case["x"] = case["x"][:1]
    loss, model, x = _setup("nce", case)
    with pytest.raises(ValueError, match="at least 2 points"):
        loss(model, x)


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
@settings(NO_SHRINK, max_examples=3)
@given(data=st.data())
def test_score_matching_at_the_wall_centre(name, data) -> None:
    case = data.draw(cases(name))
    case["x"] = case["x"].copy()
    case["x"][0] = 0.0
    loss, model, x = _setup(name, case)
    assert bool(torch.isfinite(loss(model, x).loss))


# -- hyper-parameters ---------------------------------------------------------------------------

negative = st.floats(max_value=-1e-12, allow_nan=False)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
non_positive = st.floats(max_value=0.0, allow_nan=False) | non_finite
below_one = st.integers(max_value=0)

BAD_PARAMS = [
    # (loss, parameter, bad values, exception)
    ("cd", "k", below_one, ValueError),
    ("cd", "alpha", negative | non_finite, ValueError),
    ("cd", "init", st.text(max_size=4).filter(lambda s: s not in ("data", "noise", "base")),
     ValueError),
    ("pcd", "k", below_one, ValueError),
    ("pcd", "alpha", negative | non_finite, ValueError),
    ("pcd", "buffer_size", below_one, ValueError),
    ("pcd", "reinit_prob", negative | st.floats(min_value=1.0 + 1e-9) | non_finite, ValueError),
    ("pcd", "n_negatives", below_one, ValueError),
    ("pt_cd", "k", below_one, ValueError),
    ("pt_cd", "alpha", negative | non_finite, ValueError),
    ("nce", "noise_ratio", non_positive, ValueError),
    ("nce", "noise_scale", non_positive, ValueError),
    ("score_matching", "max_dim", below_one, ValueError),
    ("sliced_score_matching", "n_projections", below_one, ValueError),
    ("sliced_score_matching", "variance_reduced", st.integers() | st.text(max_size=2),
     TypeError),
    ("denoising_score_matching", "sigmas", non_positive, ValueError),
    ("cd", "k", st.floats() | st.booleans(), TypeError),
    ("cd", "generator", st.integers() | st.text(max_size=2), TypeError),
]


@pytest.mark.parametrize("name,param,values,exc", BAD_PARAMS,
                         ids=[f"{n}-{p}-{e.__name__}" for n, p, _, e in BAD_PARAMS])
@settings(SETTINGS, max_examples=8)
@given(data=st.data())
def test_bad_hyper_parameter_raises_at_construction(name, param, values, exc, data) -> None:
    value = data.draw(values)
    with pytest.raises(exc, match=rf"^{param}"):
        ebmcore.create("loss", name, **{param: value})


@settings(SETTINGS, max_examples=8)
@given(sigmas=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4), data=st.data())
def test_dsm_names_the_bad_noise_level(sigmas, data) -> None:
    i = data.draw(st.integers(0, len(sigmas) - 1))
    sigmas[i] = data.draw(non_positive)
    with pytest.raises(ValueError, match=rf"^sigmas\[{i}\] must be"):
        ebmcore.create("loss", "denoising_score_matching", sigmas=sigmas)


@settings(NO_SHRINK, max_examples=3)
@given(value=non_finite)
def test_nce_refuses_a_non_finite_init_log_z(value) -> None:
    with pytest.raises(ValueError, match=r"init_log_z"):
        ebmcore.create("loss", "nce", init_log_z=value)
