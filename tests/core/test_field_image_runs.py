"""A field trained on image data from the command line: ``ebmcore train --dataset digits
--loss flow_matching`` takes the digits' own tuning of the loss (the recipe's ``losses``
section), samples the field as a flow and judges the images on the held-out split."""

import json

import pytest
import torch

import ebmcore
from ebmcore.cli import main
from ebmcore.config import defaults_for
from ebmcore.runs.field_images import held_out_images, logistic_coverage

pytest.importorskip("sklearn")

TINY = ["--set", "train.steps=20", "--set", "model.channels=[8]", "--set", "train.ema=0.9",
        "--set", "sample.n_chains=120", "--set", "sampler.steps=4",
        "--set", "evaluate.likelihood_points=30",
        "--set", 'evaluate.integrator={name = "rk4", params = {steps = 2}}', "--quiet"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    assert main(["train", "--dataset", "digits", "--loss", "fm", "--out", str(out),
                 "--threads", "1", *TINY]) == 0
    return out


def test_the_digits_recipe_tunes_each_field_loss():
    fm = defaults_for("digits", "flow_matching")
    assert fm["model"] == {"name": "unet_field", "params": {"channels": [16, 32]}}
    assert fm["train"]["steps"] == 6000 and fm["train"]["ema"] == 0.999
    assert fm["sampler"]["params"] == {"integrator": "heun", "steps": 50}
    assert fm["loss"]["params"] == {"time_sampling": "logit_normal"}
    eqm = defaults_for("digits", "equilibrium_matching")
    assert eqm["model"]["name"] == "unet_field" and eqm["sampler"]["params"]["t_span"][1] == 0.35
    # the generic field recipe elsewhere, the contrastive recipe without a field loss
    assert defaults_for("eight_gaussians", "fm")["train"]["steps"] == 80000  # 2-D: longer
    assert defaults_for("eight_gaussians", "equilibrium_matching")["train"]["steps"] == 20000
    assert defaults_for("digits")["model"]["name"] == "conv"


def test_a_field_run_on_digits_judges_its_images(digits_run):
    metrics = json.loads((digits_run / "metrics.json").read_text())
    likelihood = metrics["likelihood"]
    assert likelihood["n_points"] == 30 and likelihood["integrator"].startswith("RK4")
    gaussian = metrics["baselines"]["gaussian"]
    # the same dequantised held-out images and bin width: the bits per dimension compare
    assert 2.8 < gaussian["bits_per_dim"] < 3.1 and likelihood["bits_per_dim"] > 0
    report = metrics["image_samples"]
    assert report["logistic_data_coverage"]["classes_covered"] == 10
    assert 0.6 < report["logistic_data_coverage"]["confident_share"] < 0.8
    assert report["frechet"]["n_samples"] == 120 and report["frechet"]["ratio"] > 1.0
    assert metrics["flow_sampling"]["nfe"] == 8
    assert torch.load(digits_run / "samples.pt").shape == (120, 1, 8, 8)
    assert (digits_run / "samples.png").is_file() and (digits_run / "data.png").is_file()


def test_the_logistic_judge_tells_held_out_images_from_noise():
    digits = ebmcore.create("dataset", "digits")
    (train, labels), (test, _) = held_out_images(digits, 0)
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    real = logistic_coverage(train, labels, test, 10)
    fake = logistic_coverage(train, labels, noise, 10)
    assert real["classes_covered"] == 10 and real["max_share"] < 0.2
    assert real["confident_share"] > 0.6 > 0.2 > fake["confident_share"]


def test_logistic_coverage_counts_nonfinite_samples_as_not_confident():
    gen = torch.Generator().manual_seed(0)
    train = torch.cat([torch.zeros(20, 1, 2, 2), torch.ones(20, 1, 2, 2)])
    train = train + 0.01 * torch.rand(train.shape, generator=gen)
    labels = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    samples = torch.cat([torch.full((3, 1, 2, 2), 5.0), torch.full((1, 1, 2, 2), torch.nan)])
    report = logistic_coverage(train, labels, samples, 2)
    # clipped to [0, 1], the bright samples are confidently ones; the NaN one is not
    assert report["counts"] == [0, 3] and report["confident_share"] == 0.75
    assert report["max_share"] == 1.0 and report["classes_covered"] == 1


def test_evaluate_judges_a_saved_digits_field_as_its_run_did(digits_run, capsys):
    assert main(["evaluate", str(digits_run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["likelihood"]["n_points"] == 30
    assert report["image_samples"]["frechet"]["n_samples"] == 120


def test_sample_draws_and_judges_a_saved_digits_field_as_its_run_did(digits_run, tmp_path,
                                                                      capsys):
    """``ebmcore sample --checkpoint`` on a field trained on images picks the run's flow
    sampler, shapes the samples as the data set's images, draws them as the run does
    (``samples.png`` beside held-out ``data.png``) and judges them on the held-out split."""
    out = tmp_path / "drawn"
    assert main(["sample", "--checkpoint", str(digits_run / "model.pt"), "--chains", "40",
                 "--set", "sampler.steps=3", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "confident (logistic judge" in printed and "samples.png" in printed
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["sampler"]["name"] == "flow" and report["nfe"] == 6
    assert report["event_shape"] == [1, 8, 8]
    assert torch.load(out / "samples.pt").shape == (40, 1, 8, 8)
    judged = report["image_samples"]
    assert judged["frechet"]["n_samples"] == 40 and judged["frechet"]["ratio"] > 1.0
    assert judged["logistic_data_coverage"]["classes_covered"] == 10
    assert report["plots"] == [str(out / "samples.png"), str(out / "data.png")]
    assert (out / "samples.png").stat().st_size > 0 and (out / "data.png").is_file()
    # a training checkpoint of the run: rebuilt from its config.toml, with the EMA weights
    # the run saved as model.pt, so the same seed draws the same samples
    (step,) = sorted((digits_run / "checkpoints").glob("step-*.pt"))
    again = tmp_path / "from-step"
    assert main(["sample", "--checkpoint", str(step), "--chains", "40", "--set",
                 "sampler.steps=3", "--out", str(again), "--quiet"]) == 0
    assert torch.equal(torch.load(again / "samples.pt"), torch.load(out / "samples.pt"))
    assert (again / "samples.png").is_file()
    stray = tmp_path / "stray.pt"
    stray.write_bytes(step.read_bytes())
    assert main(["sample", "--checkpoint", str(stray), "--out", str(tmp_path / "no")]) == 1
    assert "is a training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_the_likelihood_integrator_is_a_name_or_a_table():
    from ebmcore.runs.fields import likelihood_integrator

    assert likelihood_integrator({"name": "rk4", "params": {"steps": 3}}).steps == 3
    assert likelihood_integrator("heun").name == "heun"
    with pytest.raises(ValueError, match="evaluate.integrator must be"):
        likelihood_integrator(4)
