"""The image report: AIS likelihood bounds against exact baselines, coverage and MMD."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.evaluation.image_report import (
    LikelihoodBounds,
    ais_start,
    crossed_bracket_note,
    image_evaluation,
    likelihood_bounds,
)
from ebmcore.evaluation.images import bits_per_dim, gaussian_baseline

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return ebmcore.create("dataset", "digits")


def _silenced_model(train: torch.Tensor) -> ebmcore.Energy:
    """A conv energy whose network outputs 0: exactly its Gaussian base, fitted to train."""
    model = ebmcore.create("model", "conv", in_channels=1, image_size=8, channels=[2]).double()
    model.fit_confinement(train)
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
    return model.eval()


def test_bounds_of_a_model_that_is_its_base_equal_the_exact_gaussian_baseline(digits):
    """Known answer: the model is the ML Gaussian of the training split, so AIS is exact."""
    gen = torch.Generator().manual_seed(0)
    train = digits.tensor(dtype=torch.float64, generator=gen)
    test = digits.held_out().tensor(dtype=torch.float64, generator=gen)
    model = _silenced_model(train)
    bounds = likelihood_bounds(model, test, model.base_energy(), digits.bin_width,
                               n_chains=20, n_temps=5, generator=torch.Generator().manual_seed(1))
    exact = gaussian_baseline(train, test)
    assert bounds.lower == pytest.approx(exact.log_likelihood, abs=1e-6)
    assert bounds.upper == pytest.approx(exact.log_likelihood, abs=1e-6)
    assert bounds.lower_stderr == pytest.approx(exact.stderr, rel=1e-6)
    assert bounds.bits_per_dim_lower == pytest.approx(
        bits_per_dim(exact.log_likelihood, 64, 1 / 17), abs=1e-9)
    assert bounds.forward_ess == pytest.approx(20.0)


def test_a_model_without_a_gaussian_base_starts_ais_from_one_fitted_to_the_images(digits):
    train = digits.tensor(generator=torch.Generator().manual_seed(0))
    walled = ebmcore.create("model", "conv", in_channels=1, image_size=8, channels=[2],
                            confine="wall")
    start = ais_start(walled, train)
    assert start.has_exact_sampler and start.event_shape == (1, 8, 8)
    torch.testing.assert_close(start.mean, train.double().mean(0).float(),
                               rtol=1e-5, atol=1e-5)


def test_image_evaluation_reports_every_figure_on_the_held_out_split(digits):
    train = digits.tensor(dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = _silenced_model(train)
    samples = model.base_energy().sample(200, torch.Generator().manual_seed(3))
    report = image_evaluation(model, digits, samples, n_ais_chains=10,
                              n_ais_temps=3).to_dict()
    assert report["n_test"] == len(digits.held_out()) and report["dim"] == 64
    assert set(report["baselines"]) == {"gaussian", "mixture(10)"}
    like = report["likelihood"]
    # the evaluation's own dequantisation of the training split differs from the one the
    # model was fitted on only in the noise, so the model is close to the baseline
    assert abs(like["lower"] - report["baselines"]["gaussian"]["log_likelihood"]) < 2.0
    assert report["classifier_accuracy"] > 0.8
    assert 0.0 <= report["coverage"]["confident_share"] <= 1.0
    assert sum(report["data_coverage"]["counts"]) > 0
    assert 0.0 < report["mmd"]["p_value"] <= 1.0


def test_image_evaluation_refuses_a_data_set_outside_the_image_protocol():
    model = ebmcore.create("model", "conv", in_channels=1, image_size=8, channels=[2])
    with pytest.raises(TypeError, match="image-data protocol"):
        image_evaluation(model, ebmcore.create("dataset", "eight_gaussians"))


def test_a_crossed_bracket_is_named_not_reported_as_bounds() -> None:
    def bounds(lower: float, upper: float) -> LikelihoodBounds:
        return LikelihoodBounds(lower=lower, upper=upper, lower_stderr=1.0, upper_stderr=1.0,
                                bits_per_dim_lower=0.0, bits_per_dim_upper=0.0,
                                log_z_lower=0.0, log_z_upper=0.0, forward_ess=2.0,
                                reverse_ess=1.0, acceptance=None)

    assert crossed_bracket_note(bounds(-10.0, -5.0)) is None
    assert crossed_bracket_note(bounds(-5.0, -6.0)) is None  # within the noise
    note = crossed_bracket_note(bounds(-2.0, -6.0))
    assert note is not None and "crossed" in note and "neither is a bound" in note
