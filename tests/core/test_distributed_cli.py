"""``ebmcore train --nproc 2`` and ``ebmcore sample --nproc 2`` through torch.distributed.run:
one run folder written by rank 0, resumable on another number of processes, chains gathered
from every rank, a killed rank ending the job with an error, and what is refused early."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ebmcore.checkpoint import load_checkpoint
from ebmcore.cli import main

TINY = ["--steps", "15", "--set", "model.hidden=[16]", "--set", "sample.n_chains=100",
        "--set", "sample.n_steps=20", "--set", "sample.burn_in=20", "--set", "evaluate.n_test=500",
        "--set", "evaluate.resolution=32", "--set", "loss.buffer_size=256", "--set", "loss.k=3",
        "--set", "train.batch_size=64", "--set", "train.log_every=5",
        "--set", "train.checkpoint_every=5", "--set", "sample.backend=torch", "--quiet"]

#: Seconds any launched command may take before the test fails (a bug cannot hang CI).
TIMEOUT = 180


def ebmcore_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ebmcore", *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


def test_train_on_two_processes_writes_one_run_that_resumes_on_one(tmp_path):
    out = tmp_path / "run"
    done = ebmcore_cli("train", "--nproc", "2", "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run folder:") == 1  # rank 0 alone reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps_done"] == 15
    state = load_checkpoint(out / "checkpoints" / "step-000000010.pt")
    assert state["loss"]["buffer"].shape == (256, 2)  # both ranks' 128 chains
    assert state["ranks"]["world_size"] == 2
    for name in ("model.pt", "samples.pt", "density.png", "training.png"):
        assert (out / name).is_file(), name

    # killed after its second checkpoint: one process takes over both ranks' chains
    (out / "checkpoints" / "step-000000015.pt").unlink()
    (out / "metrics.json").unlink()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["resumed_from"]["step"] == 10 and resumed["steps_done"] == 15
    assert resumed["world_size"] == 1
    assert load_checkpoint(out / "checkpoints" / "step-000000015.pt")["loss"]["buffer"].shape \
        == (256, 2)


def test_sample_on_two_processes_gathers_every_chain(tmp_path):
    out = tmp_path / "sample"
    done = ebmcore_cli("sample", "--energy", "gaussian", "--set", "energy.mean=[1.0, -1.0]",
                       "--set", "energy.cov=[[1.0, 0.5], [0.5, 1.0]]", "--sampler", "mala",
                       "--set", "sampler.step_size=0.5", "--chains", "200", "--steps", "60",
                       "--burn-in", "30", "--trace-chains", "50", "--backend", "torch",
                       "--save-trajectory", "--nproc", "2", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("200 chains, backend torch") == 1
    samples = torch.load(out / "samples.pt")
    trajectory = np.load(out / "trajectory.npy")  # each rank wrote its chains' columns
    assert samples.shape == (200, 2) and trajectory.shape == (60, 200, 2)
    assert np.array_equal(trajectory[-1], samples.numpy())
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["world_size"] == 2 and report["n_chains"] == 200
    chains = report["chains"]
    assert chains["total_chains"] == 200 and chains["traced_chains"] == 50
    assert chains["chain_stride"] == 4 and chains["rhat"]["max"] < 1.2


def _worker_pid(parent: int, rank: int) -> int | None:
    """The pid of the worker of rank ``rank`` that ``parent`` started, if it runs yet."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_killed_rank_ends_the_launched_job_with_an_error(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "ebmcore", "train", "--nproc", "2", "--out", str(out),
            *TINY, "--steps", "1000000", "--set", "train.checkpoint_every=2"]
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not list((out / "checkpoints").glob("step-*.pt")):  # training is under way
            assert job.poll() is None and time.monotonic() < deadline, "the job did not start"
            time.sleep(0.2)
        pid = _worker_pid(job.pid, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = job.communicate(timeout=TIMEOUT)
        seconds = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1
    assert f"ebmcore: error: rank 1 (pid {pid}) was killed by SIGKILL" in stderr
    assert seconds < 30  # torch.distributed.run stops rank 0 at once


def test_what_launching_refuses_before_any_process_starts(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--nproc", "0"])
    assert exit_info.value.code == 2
    assert "argument --nproc: expected a positive integer, got 0" in capsys.readouterr().err

    out = tmp_path / "run"
    assert main(["train", "--nproc", "3", "--out", str(out), "--set",
                 "train.batch_size=64"]) == 1
    assert "batch_size=64 is the global batch and must split evenly over the 3 ranks" in \
        capsys.readouterr().err
    assert not out.exists()

    assert main(["train", "--resume", str(tmp_path / "nowhere"), "--nproc", "2"]) == 1
    assert "to resume does not exist" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--nproc", "2", "--steps", "3"]) == 1
    assert "cannot be combined with --steps" in capsys.readouterr().err

    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    assert main(["sample", "--energy", "gaussian", "--nproc", "2", "--out", str(out)]) == 1
    assert "error: --nproc 2 launches its own workers" in capsys.readouterr().err
