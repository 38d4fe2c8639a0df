"""Energy matching on the digits from the command line: ``ebmcore train --dataset digits
--loss energy_matching`` takes the digits' own tuning (a ``unet_energy``, both phases,
descent from the base's noise) and judges the samples as a field run's are judged."""

import json

import pytest
import torch

import ebmcore
from ebmcore.checkpoint import load_checkpoint
from ebmcore.cli import main
from ebmcore.config import defaults_for

pytest.importorskip("sklearn")
pytest.importorskip("ot")  # the loss pairs noise with data by exact minibatch OT

TINY = ["--set", "train.steps=6", "--set", "loss.switch_step=4", "--set", "model.channels=[8]",
        "--set", "train.batch_size=32", "--set", "loss.n_langevin_steps=2",
        "--set", "sample.n_chains=40", "--set", "sample.burn_in=3",
        "--set", "evaluate.ais_chains=8", "--set", "evaluate.ais_temps=8", "--quiet"]


def test_the_digits_recipe_tunes_energy_matching():
    config = defaults_for("digits", "energy_matching")
    assert config["model"] == {"name": "unet_energy", "params": {"channels": [16, 32]}}
    assert config["loss"]["name"] == "energy_matching"
    params = config["loss"]["params"]
    assert 0 < params["switch_step"] < config["train"]["steps"]  # both phases run
    # the negatives are the sampler's own procedure: descents from the base's noise, cold
    loss = ebmcore.create("loss", "energy_matching", **params)
    assert loss.noise_fraction == 1.0 and loss.buffer_size is None
    assert all(loss.temperature(k) == 0.0 for k in range(loss.n_langevin_steps))
    assert config["sampler"] == {"name": "gradient_descent", "params": {"step_size": 0.003}}
    # one kept state per chain, after the descent: the written samples are its end points
    sample = config["sample"]
    assert (sample["n_steps"], sample["thin"], sample["n_chains"]) == (1, 1, 1000)
    assert config["train"]["ema"] == 0.995 and config["train"]["batch_size"] == 128


def test_an_energy_matching_run_on_digits_is_judged_like_a_field_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--loss", "energy_matching", "--out",
                 str(out), "--threads", "1", *TINY]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps_done"] == 6
    report = metrics["image_samples"]
    assert report["logistic_data_coverage"]["classes_covered"] == 10
    assert report["frechet"]["n_samples"] == 40
    assert 0.0 <= report["logistic_coverage"]["confident_share"] <= 1.0
    assert metrics["image_evaluation"]["likelihood"]["bits_per_dim_upper"] > 0
    samples = torch.load(out / "samples.pt")
    assert samples.shape == (40, 1, 8, 8) and bool(torch.isfinite(samples).all())
    assert metrics["history"][-1]["phase"] == 2.0  # the contrastive phase ran from call 4
    checkpoint = load_checkpoint(metrics["last_checkpoint"])
    assert "net.head.2.weight" in checkpoint["model"] and "origin" in checkpoint["model"]
    assert int(checkpoint["loss"]["calls"]) == 6
