"""The working sub-commands: train, demo, sample and evaluate, and their error messages."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebmcore.cli import main

TINY = ["--steps", "15", "--set", "sample.n_chains=100", "--set", "sample.n_steps=20",
        "--set", "evaluate.n_test=1000", "--set", "evaluate.resolution=48",
        "--set", "loss.buffer_size=256", "--set", "loss.k=5", "--set", "train.batch_size=64",
        "--set", "train.log_every=5", "--set", "sample.burn_in=20", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "first"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_complete_run_folder(trained_run):
    for name in ("config.toml", "metrics.json", "model.pt", "samples.pt", "density.png",
                 "samples.png", "training.png", "trace.png"):
        assert (trained_run / name).is_file(), name
    assert list((trained_run / "checkpoints").glob("step-*.pt"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["steps_done"] == 15 and metrics["seed"] == 0
    assert metrics["evaluation"]["nll"] > 0 and metrics["evaluation"]["data_nll"] > 0
    assert {"torch", "ebmcore", "numba"} <= set(metrics["versions"])
    assert metrics["history"] and "loss" in metrics["history"][-1]


def test_config_replays_the_run_exactly(trained_run, tmp_path):
    out = tmp_path / "replay"
    assert main(["train", "--config", str(trained_run / "config.toml"), "--out", str(out),
                 "--quiet"]) == 0
    first = json.loads((trained_run / "metrics.json").read_text())
    second = json.loads((out / "metrics.json").read_text())
    def without_timing(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert without_timing(first["history"]) == without_timing(second["history"])
    assert first["evaluation"] == second["evaluation"]


def test_evaluate_prints_a_table_and_json(trained_run, capsys):
    args = ["evaluate", str(trained_run), "--n-test", "500", "--ais-chains", "50",
            "--ais-temps", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "AIS log Z lower" in out and "grid nll" in out
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ais"]["log_z_lower"] == pytest.approx(report["grid"]["log_z"], abs=1.0)
    assert report["ais"]["n_temps"] == 20 and "warning" not in report["ais"]


def test_evaluate_warns_when_the_reverse_estimate_undercuts_the_lower_bound(
        trained_run, capsys, monkeypatch):
    """Reverse AIS from chains that have not reached the model is no upper bound; a figure
    below the forward lower bound says so instead of standing as a bracket."""
    import dataclasses

    import ebmcore.evaluate as evaluate

    real = evaluate.reverse_ais
    monkeypatch.setattr(evaluate, "reverse_ais", lambda *a, **k: dataclasses.replace(
        real(*a, **k), log_z=-50.0))
    assert main(["evaluate", str(trained_run), "--n-test", "200", "--ais-chains", "20"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"AIS warning +the reverse AIS estimate -50 lies below the lower bound .*"
                     r"raise the temperatures \(now 1000\)", out), out


def test_sample_an_energy_writes_samples_and_diagnostics(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--energy", "gaussian", "--set", "energy.mean=[1.0, -1.0]",
                 "--set", "energy.cov=[[1.0, 0.3], [0.3, 0.5]]", "--sampler", "mala",
                 "--set", "sampler.step_size=0.4", "--chains", "200", "--steps", "100",
                 "--burn-in", "50", "--out", str(out), "--quiet"]) == 0
    samples = torch.load(out / "samples.pt")
    assert samples.shape == (200, 2)
    import numpy as np

    assert np.array_equal(np.load(out / "samples.npy"), samples.numpy())
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["backend"] and 0.0 < report["acceptance_mean"] <= 1.0
    assert report["chains"]["rhat"]["max"] < 1.1
    assert (out / "rank.png").is_file() and (out / "samples.png").is_file()


def test_sample_a_trained_checkpoint(trained_run, tmp_path):
    assert main(["sample", "--checkpoint", str(trained_run / "model.pt"), "--sampler",
                 "langevin", "--set", "sampler.step_size=0.01", "--chains", "50", "--steps",
                 "10", "--burn-in", "0", "--out", str(tmp_path / "c"), "--quiet"]) == 0


def test_sample_a_trained_checkpoint_with_its_runs_sampler(trained_run, tmp_path,
                                                           monkeypatch):
    # no --sampler: the one the run wrote its samples with (the 2-D recipe's tempering),
    # found in the model file's metadata without reading the file a second time
    import ebmcore.checkpoint

    reads = []
    real = ebmcore.checkpoint.load_checkpoint_with_meta
    monkeypatch.setattr(ebmcore.checkpoint, "load_checkpoint_with_meta",
                        lambda path, **kw: reads.append(path) or real(path, **kw))
    out = tmp_path / "own"
    assert main(["sample", "--checkpoint", str(trained_run / "model.pt"), "--chains", "40",
                 "--steps", "10", "--burn-in", "10", "--out", str(out), "--quiet"]) == 0
    written = json.loads((out / "diagnostics.json").read_text())
    assert written["sampler"]["name"] == "parallel_tempering"
    assert len(reads) == 1


def test_ctrl_c_writes_a_final_checkpoint(monkeypatch, tmp_path):
    from ebmcore.train import Trainer

    original = Trainer.train_step

    def interrupted_step(self):
        if self.step == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    out = tmp_path / "stopped"
    assert main(["train", "--out", str(out), *TINY]) == 130
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] and metrics["steps_done"] == 4
    assert (out / "checkpoints" / "step-000000004.pt").is_file()


def one_line_error(capsys, args, code=1):
    assert main(args) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("args, expected", [
    (["train", "--loss", "pcdd"], "Did you mean 'pcd'"),
    (["train", "--set", "no_equals_sign"], "--set expects section.key=value"),
    (["train", "--set", "colour.x=1"], "unknown section 'colour'"),
    (["train", "--set", "model.bogus=1"], "Accepted parameters"),
    (["sample", "--energy", "gausian"], "Did you mean 'gaussian'"),
    (["evaluate", "/nonexistent/model.pt"], "does not exist"),
])
def test_bad_arguments_fail_with_one_line(capsys, tmp_path, args, expected):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "x")]
    err = one_line_error(capsys, args)
    assert expected in err


def test_corrupt_checkpoint_is_rejected(capsys, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert "cannot be read safely" in one_line_error(capsys, ["evaluate", str(bad)])


def test_unwritable_output_folder_is_rejected(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    err = one_line_error(capsys, ["train", "--out", str(blocker / "run"), *TINY])
    assert "cannot write to output folder" in err


def test_non_empty_output_folder_is_not_clobbered(capsys, trained_run):
    err = one_line_error(capsys, ["train", "--out", str(trained_run), *TINY])
    assert "not empty" in err


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--energy", "gaussian", "--chains", "many"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_an_unknown_backend_is_refused_before_anything_is_written(capsys, tmp_path):
    """--backend takes any registered backend (a plugin may add one); an unknown name is one
    line naming the ones there are, and no folder is made."""
    err = one_line_error(capsys, ["sample", "--energy", "double_well", "--set",
                                  "sampler.step_size=0.1", "--backend", "fortran",
                                  "--out", str(tmp_path / "f")])
    assert "backend must be one of auto, torch, " in err and "got 'fortran'" in err
    assert not (tmp_path / "f").exists()


def test_no_traceback_from_the_console_script(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ebmcore", "train", "--model", "mpl",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Did you mean 'mlp'" in done.stderr and "Traceback" not in done.stderr


def test_demo_reruns_write_next_to_the_last_demo(monkeypatch, tmp_path):
    from ebmcore.cli import demo

    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr("ebmcore.runs.train_run",
                        lambda config, out, **kw: calls.append(Path(out)) or {})
    (tmp_path / "ebmcore-demo").mkdir()
    (tmp_path / "ebmcore-demo" / "metrics.json").write_text("{}")
    assert main(["demo", "--quiet"]) == 0
    assert main(["demo", "--quiet", "--out", "chosen"]) == 0
    assert calls == [Path(demo.DEMO_FOLDER + "-2"), Path("chosen")]
    assert (tmp_path / "ebmcore-demo" / "metrics.json").read_text() == "{}"


def test_summary_gives_a_likelihood_only_for_a_density():
    """The run summary prints the whole-plane NLL for a density and NO LIKELIHOOD otherwise,
    and the mass outside the box and the far-field energy in both cases."""
    import ebmcore
    from ebmcore.cli.summary import evaluation_lines
    from ebmcore.evaluate import grid_evaluation

    test_x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    gaussian = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0])
    good = evaluation_lines(grid_evaluation(gaussian, None, test_x, bounds=(-3, 3),
                                            resolution=64).to_dict())
    assert good[0].startswith("test NLL") and "whole plane" in good[0]
    assert "mass outside the box" in good[1] and "highest on test data" in good[1]
    bare = ebmcore.create("model", "mlp", dim=2, hidden=[], confine=False)
    with torch.no_grad():
        bare.net[0].weight.copy_(torch.tensor([[-5.0, 0.0]]))
    bad = evaluation_lines(grid_evaluation(bare, None, test_x, bounds=(-3, 3),
                                           resolution=64).to_dict())
    assert bad[0].startswith("NO LIKELIHOOD: the model is not normalisable")
    assert "mass outside the box" in bad[1]


def test_a_diverging_run_names_the_step_and_the_cause(capsys, tmp_path):
    err = one_line_error(capsys, ["train", "--out", str(tmp_path / "d"), *TINY,
                                  "--set", "train.lr=1e6"])
    assert "x0" not in err  # the sampler's complaint about its starting points is a symptom
    assert re.search(r"training diverged at step \d+: (the negative samples|energy_neg|the loss)",
                     err)
    assert "learning rate (lr=1e+06)" in err and "no checkpoint was written" in err


@pytest.mark.parametrize("option, value, expected", [
    ("--dim", "-1", "a positive integer"), ("--dim", "0", "a positive integer"),
    ("--chains", "0", "a positive integer"), ("--steps", "-5", "a positive integer"),
    ("--thin", "0", "a positive integer"), ("--burn-in", "-1", "a non-negative integer"),
    ("--init-scale", "nan", "a positive, finite number"),
])
def test_sample_sizes_are_checked(capsys, option, value, expected):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--energy", "double_well", option, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected {expected}" in err
    assert len(err.strip().splitlines()) == 1


def test_the_default_sampler_runs_with_no_step_size(tmp_path, capsys):
    # MALA's step_size defaults to None (issue #24): found by a search at the first step,
    # then adapted in burn-in; without burn-in the search alone sets it.
    out = tmp_path / "dw"
    assert main(["sample", "--energy", "double_well", "--chains", "40", "--steps", "30",
                 "--burn-in", "30", "--backend", "torch", "--out", str(out)]) == 0
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["sampler"] == {"name": "mala", "params": {}}
    assert 0.3 < report["acceptance_mean"] < 0.8  # adapted toward 0.574
    assert main(["sample", "--energy", "double_well", "--chains", "40", "--steps", "10",
                 "--burn-in", "0", "--out", str(tmp_path / "none")]) == 0


def test_dim_sets_the_dimension_or_is_refused(tmp_path, capsys):
    out = tmp_path / "dw3"
    assert main(["sample", "--energy", "double_well", "--dim", "3", "--chains", "20",
                 "--steps", "5", "--burn-in", "5", "--backend", "torch", "--quiet",
                 "--out", str(out)]) == 0
    assert torch.load(out / "samples.pt").shape == (20, 3)
    err = one_line_error(capsys, ["sample", "--energy", "gaussian", "--set",
                                  "energy.mean=[0, 0]", "--dim", "3", "--quiet"])
    assert "--dim 3 does not fit Gaussian" in err
    err = one_line_error(capsys, ["sample", "--energy", "double_well", "--dim", "3",
                                  "--set", "energy.dim=2", "--quiet"])
    assert "disagree" in err


def test_sample_traces_a_subset_and_streams_the_trajectory(tmp_path, capsys):
    import numpy as np

    import ebmcore

    out = tmp_path / "traced"
    assert main(["sample", "--energy", "double_well", "--sampler", "langevin", "--set",
                 "sampler.step_size=0.01", "--chains", "30", "--steps", "12", "--burn-in", "3",
                 "--thin", "2", "--trace-chains", "7", "--save-trajectory", "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(on 6 of 30 chains x 6 draws)" in printed and "trajectory.npy" in printed
    report = json.loads((out / "diagnostics.json").read_text())
    chains = report["chains"]
    assert (chains["n_chains"], chains["n_draws"], chains["chain_stride"]) == (6, 6, 5)
    assert chains["total_chains"] == 30 and chains["rhat"]["max"] > 0
    streamed = np.load(out / "trajectory.npy", mmap_mode="r")
    assert streamed.shape == (6, 30, 2)
    assert np.array_equal(streamed[-1], np.load(out / "samples.npy"))
    # the same run in memory (sample_run seeds x0 with the seed and the sampler with seed + 1)
    x0 = torch.randn((30, 2), generator=torch.Generator().manual_seed(0))
    sampler = ebmcore.create("sampler", "langevin", step_size=0.01)
    full = sampler.sample(ebmcore.create("energy", "double_well"), x0, 12, burn_in=3, thin=2,
                          generator=torch.Generator().manual_seed(1), return_trajectory=True,
                          backend="torch")
    assert np.array_equal(streamed, full.trajectory.numpy())


def test_sample_trace_chains_and_save_trajectory_are_checked(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["sample", "--energy", "double_well", "--trace-chains", "0"])
    assert info.value.code == 2
    assert "argument --trace-chains: expected a positive integer" in capsys.readouterr().err
    err = one_line_error(capsys, ["sample", "--energy", "double_well", "--set",
                                  "sampler.step_size=0.1", "--backend", "numba",
                                  "--save-trajectory", "--out", str(tmp_path / "n")])
    assert "--save-trajectory streams" in err and "Use --backend torch" in err
    assert not (tmp_path / "n").exists()
    err = one_line_error(capsys, ["sample", "--energy", "double_well", "--set",
                                  "sampler.step_size=0.1", "--steps", "1", "--thin", "2",
                                  "--out", str(tmp_path / "t")])
    assert "--steps 1 with --thin 2 keeps no step" in err


def test_training_metrics_say_which_chains_the_diagnostics_used(trained_run):
    chains = json.loads((trained_run / "metrics.json").read_text())["sampling"]["chains"]
    assert chains["total_chains"] == 100 and chains["chain_stride"] == 1
    assert chains["n_chains"] + chains["n_nonfinite_chains"] == chains["traced_chains"] == 100
    assert chains["n_draws"] == 4  # 20 kept steps, thinned by 5


def test_a_runaway_run_is_reported_in_the_summary_and_metrics(tmp_path, capsys):
    """With a tiny runaway limit every run 'runs away': the summary and metrics.json say so."""
    out = tmp_path / "runaway"
    with pytest.warns(UserWarning, match="running away"):
        assert main(["train", "--out", str(out), *TINY,
                     "--set", "train.runaway_energy=1e-9"]) == 0
    assert "RUNAWAY:" in capsys.readouterr().out
    runaway = json.loads((out / "metrics.json").read_text())["runaway"]
    assert runaway["step"] == 5 and runaway["limit"] == 1e-9


def test_a_replayed_config_with_an_unknown_key_is_refused(trained_run, tmp_path, capsys):
    """train --config checks the file's keys like --set does, before anything is built."""
    text = (trained_run / "config.toml").read_text().replace("[evaluate]",
                                                             "[evaluate]\nresolutoin = 64")
    config = tmp_path / "config.toml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o"),
                 "--quiet"]) != 0
    assert "did you mean 'resolution'" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.pt").exists()


def test_train_on_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    """Asking for a GPU that torch cannot see is a clear error, not a traceback."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "c"), *TINY]) != 0
    assert "torch sees no CUDA device" in capsys.readouterr().err


def test_a_loss_named_on_the_command_line_brings_its_recipe(tmp_path):
    """``--loss score_matching`` trains the two-layer mlp of its recipe; ``--set`` still wins,
    and the written config replays it."""
    out = tmp_path / "sm"
    assert main(["train", "--loss", "score_matching", "--out", str(out), "--steps", "3",
                 "--set", "sample.n_chains=20", "--set", "sample.n_steps=5",
                 "--set", "sample.burn_in=0", "--set", "evaluate.n_test=500",
                 "--set", "evaluate.resolution=32", "--set", "train.batch_size=32",
                 "--set", "train.log_every=1", "--set", "model.activation='elu'",
                 "--quiet"]) == 0
    config = (out / "config.toml").read_text()
    assert re.search(r"hidden = \[128, 128\]\n", config), config
    assert 'activation = "elu"' in config
