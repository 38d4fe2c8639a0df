"""What the commands share: library names become options, and the options build a config."""

from __future__ import annotations

import pytest

from ebmcore.cli import build_parser
from ebmcore.cli.options import name_flags, train_config


def test_name_flags_replaces_whole_names_longest_first():
    flags = {"train.steps": "train.steps (--steps)", "settings['n_steps']": "--steps",
             "settings['n']": "--n"}
    assert name_flags("train.steps must be at least 1", flags) == \
        "train.steps (--steps) must be at least 1"
    assert name_flags("settings['n_steps'] 1 keeps no step", flags) == "--steps 1 keeps no step"
    # only whole names: a longer key that merely starts alike is left alone
    assert name_flags("train.steps_total and my_train.steps", flags) == \
        "train.steps_total and my_train.steps"


def test_the_library_names_keys_and_the_command_line_names_options(tmp_path, capsys):
    """sample_run's error names settings['n_steps']; the sample command says --steps."""
    import ebmcore
    from ebmcore.cli import main
    from ebmcore.runs import sample_run

    energy = ebmcore.create("energy", "double_well")
    with pytest.raises(ValueError, match=r"settings\['n_steps'\] 1 with settings\['thin'\] 2"):
        sample_run(energy, {"name": "langevin", "params": {"step_size": 0.1}},
                   {"n_chains": 4, "n_steps": 1, "thin": 2}, tmp_path / "lib")
    assert main(["sample", "--energy", "double_well", "--set", "sampler.step_size=0.1",
                 "--steps", "1", "--thin", "2", "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    assert "--steps 1 with --thin 2 keeps no step" in err and "settings[" not in err


def test_the_run_folder_error_names_overwrite_as_the_option(tmp_path, capsys):
    from ebmcore.cli import main
    from ebmcore.runs import prepare_output_dir

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_output_dir(tmp_path / "full")
    assert main(["sample", "--energy", "double_well", "--set", "sampler.step_size=0.1",
                 "--out", str(tmp_path / "full"), "--quiet"]) == 1
    assert "choose another or pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "demo"])
def test_threads_sets_train_threads(command):
    args = build_parser().parse_args([command, "--threads", "3", "--steps", "7"])
    config = train_config(args)
    assert config["train"]["threads"] == 3 and config["train"]["steps"] == 7
    args = build_parser().parse_args([command])
    assert "threads" not in train_config(args)["train"]


@pytest.mark.parametrize("command", [["sample", "--energy", "gaussian"],
                                     ["evaluate", "run"], ["train"], ["demo"]])
def test_threads_must_be_a_positive_integer(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--threads", "0"])
    assert info.value.code == 2
    assert "argument --threads: expected a positive integer" in capsys.readouterr().err


def test_resume_refuses_threads(tmp_path, capsys):
    from ebmcore.cli import main

    assert main(["train", "--resume", str(tmp_path), "--threads", "2"]) == 1
    assert "cannot be combined with --threads" in capsys.readouterr().err


def test_sample_fits_the_threads_to_the_chains(monkeypatch, tmp_path):
    """sample hands --threads (or None: the rule decides) and the size of one step over the
    chains to fit_threads, once, before sampling."""
    import ebmcore.threads
    from ebmcore.cli import main

    calls = []
    monkeypatch.setattr(ebmcore.threads, "fit_threads",
                        lambda requested=None, *, work=None: calls.append((requested, work)) or 1)
    common = ["sample", "--energy", "double_well", "--set", "sampler.step_size=0.1",
              "--chains", "30", "--steps", "4", "--burn-in", "0", "--backend", "torch",
              "--quiet"]
    assert main([*common, "--threads", "2", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b")]) == 0
    assert [requested for requested, _ in calls] == [2, None]
    assert all(work is not None and work >= 30 * 2 for _, work in calls)
