"""Every built-in data set: shapes, dtypes, seeding, the global RNG and argument checks."""

from __future__ import annotations

import pytest
import torch

import ebmcore

ALL = ["eight_gaussians", "two_moons", "swiss_roll", "checkerboard", "rings", "spirals",
       "pinwheel"]
WITH_LOG_PROB = {"eight_gaussians", "checkerboard", "rings"}


def test_registry_lists_every_dataset_with_documented_parameters():
    assert set(ALL) <= set(ebmcore.names("dataset"))
    for name in ALL:
        info = ebmcore.describe("dataset", name)
        assert info["summary"]
        assert all(p["doc"] for p in info["parameters"]), (name, info["parameters"])


@pytest.mark.parametrize("name", ALL)
def test_is_a_dataset_and_declares_log_prob_honestly(name):
    data = ebmcore.create("dataset", name)
    assert isinstance(data, ebmcore.Dataset)
    assert data.has_log_prob == (name in WITH_LOG_PROB)
    assert data.event_shape == (2,)


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_dtypes(name):
    data = ebmcore.create("dataset", name)
    gen = torch.Generator().manual_seed(0)
    x = data.sample(17, gen)
    assert x.shape == (17, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    x64 = data.sample(3, gen, dtype=torch.float64)
    assert x64.dtype == torch.float64
    assert data.sample(1, gen).shape == (1, 2)
    if data.has_log_prob:
        lp = data.log_prob(x)
        assert lp.shape == (17,) and lp.dtype == torch.float32
        assert torch.isfinite(lp).all()  # samples lie where the density is positive
        assert data.log_prob(x64).dtype == torch.float64


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_bits_and_different_seed_differs(name):
    data = ebmcore.create("dataset", name)
    a = data.sample(500, torch.Generator().manual_seed(3))
    b = data.sample(500, torch.Generator().manual_seed(3))
    c = data.sample(500, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ALL)
def test_global_rng_is_untouched(name):
    data = ebmcore.create("dataset", name)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    x = data.sample(100, torch.Generator().manual_seed(0))
    data.sample(100)  # no generator: a private, freshly seeded one
    if data.has_log_prob:
        data.log_prob(x)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("name", ALL)
def test_no_generator_still_draws_fresh_randomness(name):
    data = ebmcore.create("dataset", name)
    assert not torch.equal(data.sample(50), data.sample(50))


@pytest.mark.parametrize("name", ALL)
def test_bad_sample_arguments(name):
    data = ebmcore.create("dataset", name)
    for n in (0, -3):
        with pytest.raises(ValueError, match="n must be at least 1"):
            data.sample(n)
    for n in (2.5, True, "10"):
        with pytest.raises(TypeError, match="n must be an integer"):
            data.sample(n)
    for dtype in (torch.int64, "float32", None):
        with pytest.raises(TypeError, match="dtype"):
            data.sample(4, dtype=dtype)
    with pytest.raises(TypeError, match="generator"):
        data.sample(4, generator=0)


@pytest.mark.parametrize("name, param", [
    ("eight_gaussians", "std"), ("eight_gaussians", "radius"),
    ("two_moons", "noise"), ("two_moons", "scale"),
    ("swiss_roll", "noise"), ("swiss_roll", "scale"),
    ("checkerboard", "width"),
    ("rings", "noise"),
    ("spirals", "noise"), ("spirals", "turns"), ("spirals", "scale"),
    ("pinwheel", "radial_std"), ("pinwheel", "tangential_std"), ("pinwheel", "scale"),
])
def test_non_positive_scales_are_rejected_by_name(name, param):
    values = (-1.0, float("nan")) if param == "radius" else (0.0, -1.0, float("inf"))
    for value in values:
        with pytest.raises(ValueError, match=param):
            ebmcore.create("dataset", name, **{param: value})


@pytest.mark.parametrize("name, param", [
    ("eight_gaussians", "n_components"), ("checkerboard", "n_squares"),
    ("spirals", "n_arms"), ("pinwheel", "n_blades"),
])
def test_counts_must_be_positive_integers(name, param):
    with pytest.raises(ValueError, match=param):
        ebmcore.create("dataset", name, **{param: 0})
    with pytest.raises(TypeError, match=param):
        ebmcore.create("dataset", name, **{param: 2.0})


def test_other_argument_checks():
    with pytest.raises(ValueError, match="t_max must exceed t_min"):
        ebmcore.create("dataset", "swiss_roll", t_min=3.0, t_max=2.0)
    with pytest.raises(ValueError, match="shift"):
        ebmcore.create("dataset", "two_moons", shift=(1.0,))
    with pytest.raises(ValueError, match=r"radii\[1\]"):
        ebmcore.create("dataset", "rings", radii=(1.0, -2.0))
    with pytest.raises(ValueError, match="radii must hold at least 1"):
        ebmcore.create("dataset", "rings", radii=())
    with pytest.raises(ValueError, match="one value per radius"):
        ebmcore.create("dataset", "rings", radii=(1.0, 2.0), weights=(1.0,))
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        ebmcore.create("dataset", "rings", radii=(1.0, 2.0), weights=(0.0, 1.0))


@pytest.mark.parametrize("name", sorted(WITH_LOG_PROB))
def test_log_prob_input_checks(name):
    data = ebmcore.create("dataset", name)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        data.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        data.log_prob(torch.zeros(2))
    with pytest.raises(TypeError, match="floating-point"):
        data.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-finite"):
        data.log_prob(torch.tensor([[float("nan"), 0.0]]))
