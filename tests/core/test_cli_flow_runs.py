"""A field trained from the command line: ``ebmcore train --loss flow_matching`` brings the
recipe's field model, samples it as a flow and scores it; ``ebmcore sample --checkpoint``
samples the saved field with the run's flow sampler and ``ebmcore evaluate`` scores it."""

import json

import pytest
import torch

import ebmcore
from ebmcore.cli import main
from ebmcore.runs.fields import flow_sampler, is_flow_model

SMALL = ["--set", "train.steps=30", "--set", "train.batch_size=64",
         "--set", "model.hidden=[32, 32]", "--set", "evaluate.n_test=400",
         "--set", "evaluate.likelihood_points=100", "--set", "sample.n_chains=300",
         "--set", "sampler.steps=20", "--quiet"]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow") / "run"
    assert main(["train", "--dataset", "eight_gaussians", "--loss", "flow_matching",
                 "--out", str(out), *SMALL]) == 0
    return out


def test_flow_matching_trains_the_recipes_field_and_scores_it(flow_run, capsys):
    config = (flow_run / "config.toml").read_text()
    assert 'name = "mlp_field"' in config and 'name = "flow"' in config
    metrics = json.loads((flow_run / "metrics.json").read_text())
    likelihood = metrics["likelihood"]
    assert likelihood["n_points"] == 100 and likelihood["integrator"].startswith("RK4")
    assert -50.0 < likelihood["log_likelihood"] < 0.0
    tv = metrics["histogram_tv"]
    assert 0.0 <= tv["floor"] <= tv["tv"] <= 1.0 and tv["n_samples"] == 300
    sampling = metrics["flow_sampling"]
    assert sampling["nfe"] == 40 and sampling["prediction"] == "velocity"
    assert "mmd_to_test_data" in sampling and "evaluation" not in metrics
    assert torch.load(flow_run / "samples.pt").shape == (300, 2)
    assert (flow_run / "samples.png").is_file()


def test_sample_picks_the_runs_flow_sampler_for_a_field(flow_run, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(flow_run / "model.pt"), "--chains", "50",
                 "--set", "sampler.steps=5", "--out", str(out), "--quiet"]) == 0
    assert "field evaluations" in capsys.readouterr().out
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["sampler"]["name"] == "flow" and report["nfe"] == 10
    assert torch.load(out / "samples.pt").shape == (50, 2)


def test_evaluate_scores_a_saved_field_as_its_run_did(flow_run, capsys):
    assert main(["evaluate", str(flow_run), "--n-test", "300", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["likelihood"]["n_points"] == 100 and "ais" not in report
    assert report["flow_sampling"]["n_samples"] == 300 and "histogram_tv" in report
    assert main(["evaluate", str(flow_run), "--n-test", "300"]) == 0
    assert "test log-likelihood (flow ODE" in capsys.readouterr().out


def test_a_field_with_an_energy_keeps_the_energy_path():
    energy = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    field = ebmcore.create("model", "mlp_field", dim=2, hidden=(8,))
    assert is_flow_model(field)
    assert not is_flow_model(ebmcore.field.EnergyField(energy)) and not is_flow_model(energy)


def test_a_field_refuses_an_mcmc_sampler():
    with pytest.raises(ValueError, match="flow sampler"):
        flow_sampler({"name": "langevin", "params": {"step_size": 0.1}}, {})
