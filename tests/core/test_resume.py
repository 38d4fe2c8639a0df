"""``ebmcore train --resume``: killed, stopped and damaged runs continue bit for bit."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from ebmcore.checkpoint import load_checkpoint
from ebmcore.cli import main

# A small model and little evaluation keep each run to about a second; checkpoints every 5
# of 15 steps give a kill point between the second checkpoint and the end.
FAST = ["--steps", "15", "--set", "model.hidden=[16]", "--set", "loss.buffer_size=128",
        "--set", "loss.k=3", "--set", "train.batch_size=32", "--set", "train.log_every=5",
        "--set", "train.checkpoint_every=5", "--set", "sample.n_chains=50",
        "--set", "sample.n_steps=10", "--set", "sample.burn_in=10", "--set", "sample.thin=1",
        "--set", "evaluate.n_test=500", "--set", "evaluate.resolution=32", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run, the result every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    assert main(["train", "--out", str(out), *FAST]) == 0
    return out


def weights(run):
    return load_checkpoint(run / "model.pt")["state_dict"]


def assert_same_model(run, reference):
    mine, theirs = weights(run), weights(reference)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key


def history(run, steps=None):
    rows = json.loads((run / "metrics.json").read_text())["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows
            if steps is None or row["step"] in steps]


def test_a_run_killed_after_its_second_checkpoint_resumes_bit_for_bit(reference, tmp_path):
    out = tmp_path / "killed"
    # SIGKILL itself after step 12: checkpoints 5 and 10 exist, nothing after them is saved
    script = textwrap.dedent(f"""
        import os, signal, sys
        import torch
        torch.set_num_threads({torch.get_num_threads()})
        from ebmcore.train import Trainer
        from ebmcore.cli import main
        original = Trainer.train_step
        def step(self):
            output = original(self)
            if self.step == 12:
                os.kill(os.getpid(), signal.SIGKILL)
            return output
        Trainer.train_step = step
        sys.exit(main(sys.argv[1:]))
    """)
    done = subprocess.run([sys.executable, "-c", script, "train", "--out", str(out), *FAST],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == [
        "step-000000005.pt", "step-000000010.pt"]
    assert not (out / "model.pt").exists()

    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_model(out, reference)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps_done"] == 15 and not metrics["interrupted"]
    assert metrics["resumed_from"] == {"checkpoint": str(out / "checkpoints" /
                                                         "step-000000010.pt"), "step": 10}
    assert history(out) == history(reference)  # the checkpoint carried steps 5 and 10
    for name in ("samples.pt", "density.png", "training.png", "trace.png"):
        assert (out / name).is_file(), name


def test_a_cut_short_newest_checkpoint_is_skipped_with_a_message(reference, tmp_path, capsys):
    out = tmp_path / "cut"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(reference / "config.toml", out)
    for step in (5, 10):
        name = f"step-{step:09d}.pt"
        shutil.copy(reference / "checkpoints" / name, out / "checkpoints")
    whole = (reference / "checkpoints" / "step-000000015.pt").read_bytes()
    (out / "checkpoints" / "step-000000015.pt").write_bytes(whole[: len(whole) // 2])
    (out / "notes.txt").write_text("mine")

    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipping unreadable checkpoint" in err and "step-000000015.pt" in err
    assert "cannot be read safely" in err
    assert_same_model(out, reference)
    assert json.loads((out / "metrics.json").read_text())["resumed_from"]["step"] == 10
    assert (out / "notes.txt").read_text() == "mine"  # only train_run's outputs are written


def test_sigterm_stops_at_a_step_with_a_checkpoint_and_the_run_resumes(reference, tmp_path,
                                                                     monkeypatch, capsys):
    from ebmcore.train import Trainer

    def sentinel(signum, frame):  # catches the signal should the run not handle it
        raise AssertionError("the training run did not handle SIGTERM")

    previous = signal.signal(signal.SIGTERM, sentinel)
    original = Trainer.train_step

    def step(self):
        output = original(self)
        if self.step == 7:
            signal.raise_signal(signal.SIGTERM)
        return output

    monkeypatch.setattr(Trainer, "train_step", step)
    out = tmp_path / "terminated"
    try:
        assert main(["train", "--out", str(out), *FAST]) == 143
        assert signal.getsignal(signal.SIGTERM) is sentinel  # the handler was put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert "stopped by SIGTERM at step 7" in err and f"--resume {out}" in err
    assert (out / "checkpoints" / "step-000000007.pt").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] and metrics["stopped_by"] == "SIGTERM"
    assert metrics["steps_done"] == 7

    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert_same_model(out, reference)
    # the stop recorded step 7 too; every step the reference logged is the same
    assert history(out, {5.0, 10.0, 15.0}) == history(reference)


def test_a_finished_run_resumed_does_nothing(reference, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in reference.iterdir()}
    assert main(["train", "--resume", str(reference), "--quiet"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in reference.iterdir()} == before


def one_line_error(capsys, args):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("extra, named", [
    (["--set", "train.lr=0.1"], "--set"), (["--steps", "30"], "--steps"),
    (["--out", "elsewhere"], "--out"), (["--loss", "dsm", "--overwrite"], "--loss, --overwrite"),
])
def test_resume_refuses_options_that_would_change_the_run(reference, capsys, extra, named):
    err = one_line_error(capsys, ["train", "--resume", str(reference), *extra])
    assert "cannot be combined with " + named in err


def test_resume_without_a_checkpoint_is_a_clear_error(reference, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no config.toml" in one_line_error(capsys, ["train", "--resume", str(empty)])
    shutil.copy(reference / "config.toml", empty)
    assert "holds no checkpoints" in one_line_error(capsys, ["train", "--resume", str(empty)])
    missing = tmp_path / "missing"
    assert "does not exist" in one_line_error(capsys, ["train", "--resume", str(missing)])
