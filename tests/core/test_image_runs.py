"""Image runs end to end: ``ebmcore train --dataset digits`` with its recipe, its pictures,
its report and ``ebmcore evaluate`` on it (tiny sizes: a CI machine has two cores)."""

import json

import pytest

from ebmcore.cli import main
from ebmcore.config import ConfigError, check_train_config, defaults_for

pytest.importorskip("sklearn")

TINY = ["--steps", "12", "--set", "model.channels=[4]", "--set", "loss.buffer_size=128",
        "--set", "loss.k=3", "--set", "train.batch_size=32", "--set", "train.log_every=4",
        "--set", "train.picture_every=5", "--set", "sample.n_chains=40",
        "--set", "sample.n_steps=20", "--set", "evaluate.ais_chains=16",
        "--set", "evaluate.ais_temps=8", "--quiet"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    assert main(["train", "--dataset", "digits", "--out", str(out), *TINY]) == 0
    return out


def test_an_image_data_set_starts_from_the_image_recipe():
    for name in ("digits", "mnist", "fashion_mnist"):
        config = defaults_for(name)
        check_train_config(config)
        assert config["dataset"]["name"] == name and config["model"]["name"] == "conv"
        assert config["model"]["params"]["confine"] == "gaussian"
        assert config["loss"]["params"]["init"] == "base"
        assert config["sampler"]["params"]["precondition"] is True
    assert defaults_for("Fashion-MNIST")["dataset"]["name"] == "fashion_mnist"
    # a 2-D data set keeps the 2-D recipe, under its own name
    assert defaults_for("rings") == {**defaults_for(None),
                                     "dataset": {"name": "rings", "params": {}}}
    assert defaults_for(None)["model"]["name"] == "mlp"


def test_image_settings_are_checked():
    config = defaults_for("digits")
    config["train"]["picture_every"] = 0
    with pytest.raises(ConfigError, match="train.picture_every"):
        check_train_config(config)
    config = defaults_for("digits")
    config["evaluate"]["ais_temp"] = 10
    with pytest.raises(ConfigError, match="did you mean 'ais_temps'"):
        check_train_config(config)


def test_train_digits_writes_pictures_and_the_image_report(image_run, capsys):
    for name in ("samples.png", "data.png", "chain.png", "training.png", "model.pt"):
        assert (image_run / name).is_file(), name
    replay = sorted(p.name for p in (image_run / "pictures").glob("replay-step-*.png"))
    assert replay == ["replay-step-000000005.png", "replay-step-000000010.png",
                      "replay-step-000000012.png"]
    config = (image_run / "config.toml").read_text()
    # the model receives the data's shape as its descriptor declares (data_shape)
    assert 'name = "conv"' in config and "event_shape = [1, 8, 8]" in config
    report = json.loads((image_run / "metrics.json").read_text())["image_evaluation"]
    assert report["dim"] == 64 and report["n_test"] == 359
    assert report["likelihood"]["lower"] <= report["likelihood"]["upper"] + 5.0
    assert {"gaussian", "mixture(10)"} == set(report["baselines"])
    assert report["coverage"]["classes_covered"] >= 1


def test_evaluate_reports_an_image_run(image_run, capsys):
    assert main(["evaluate", str(image_run), "--ais-chains", "8", "--ais-temps", "4"]) == 0
    out = capsys.readouterr().out
    assert "test log-likelihood (AIS) between" in out
    assert "exact baselines on the same split: gaussian" in out
    assert "class coverage:" in out


def test_an_interrupted_image_run_resumes_with_its_recipe_to_the_same_bits(tmp_path):
    import torch

    from ebmcore.config import apply_overrides
    from ebmcore.runs import resume_run, train_run

    config = apply_overrides(defaults_for("digits"), [
        "train.steps=6", "train.checkpoint_every=3", "model.channels=[4]",
        "loss.buffer_size=64", "loss.k=2", "train.batch_size=16", "sample.n_chains=16",
        "sample.n_steps=5", "evaluate.ais_chains=4", "evaluate.ais_temps=3"])
    out = tmp_path / "run"
    train_run(config, out)
    finished = torch.load(out / "model.pt", weights_only=False)
    # as if killed after step 3's checkpoint: the later one and the outputs never written
    (out / "checkpoints" / "step-000000006.pt").unlink()
    (out / "metrics.json").unlink()
    metrics = resume_run(out)
    assert metrics["resumed_from"]["step"] == 3
    resumed = torch.load(out / "model.pt", weights_only=False)
    weights, again = finished["payload"]["state_dict"], resumed["payload"]["state_dict"]
    assert weights.keys() == again.keys() and "confinement.scale_tril" in weights
    assert all(torch.equal(weights[k], again[k]) for k in weights)
