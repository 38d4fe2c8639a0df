"""Two gloo processes on the CPU: DDP-style training equals one process on the same global
batch, persistent chains stay per rank and resume on another number of ranks, sharded
sampling matches unsharded statistics, and a dead or silent rank ends the job with an error.

One spawn of two ranks runs every training and sampling scenario (module fixture), so the
start-up cost of the processes is paid once; the tests compare what the ranks saved with
runs made here, in one process.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import ebmcore
from ebmcore.checkpoint import load_checkpoint
from ebmcore.train import Trainer

#: Seconds a collective waits for the other rank in these tests (a bug cannot hang CI).
GROUP_TIMEOUT = 30
#: Seconds a whole spawned job may take before the test kills it and fails.
JOB_TIMEOUT = 150
#: The exact loss's steps, and the step its checkpoints resume from.
STEPS, HALF = 8, 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, scenario: str, folder: str, timeout: float) -> None:
    """A spawned rank: join the gloo group, run the scenario, record any error."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout))
    try:
        SCENARIOS[scenario](rank, Path(folder))
    except BaseException:
        Path(folder, f"error-{rank}.txt").write_text(traceback.format_exc())
        dist.destroy_process_group()
        raise
    # Both ranks finish together, then leave without running gloo's destructors: its
    # teardown races with the peer's ("terminate called without an active exception",
    # SIGABRT), seen in CI for rank 1 before the barrier and for rank 0 after it with
    # destroy_process_group. These ranks test the scenarios, not gloo's teardown; every
    # file they write is closed by now, and the sockets close with the process.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(scenario: str, folder: Path, *, world: int = 2,
          timeout: float = GROUP_TIMEOUT) -> list[int | None]:
    """Run ``scenario`` on ``world`` gloo ranks; return their exit codes (killed if late)."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(r, world, port, scenario, str(folder), timeout))
             for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + JOB_TIMEOUT
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, f"{scenario}: ranks still running after {JOB_TIMEOUT} s"
    return [p.exitcode for p in procs]


def errors(folder: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(folder.glob("error-*.txt")))


# -- what the ranks run ----------------------------------------------------------------------


def data() -> torch.Tensor:
    return ebmcore.create("dataset", "two_moons").sample(
        256, generator=torch.Generator().manual_seed(5))


def exact_trainer(distributed: bool, source: str = "tensor", checkpoint_dir: Path | None = None,
                  steps: int = STEPS) -> Trainer:
    """Exact score matching (no random draws): the runs must agree to rounding."""
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[16])
    return Trainer(model, "score_matching", data=data() if source == "tensor" else "two_moons",
                   steps=steps, batch_size=64, lr=1e-2, grad_clip=1.0, ema=0.9, log_every=2,
                   checkpoint_dir=checkpoint_dir,
                   checkpoint_every=HALF if checkpoint_dir is not None else None, seed=3,
                   distributed=distributed)


def pcd_trainer(distributed: bool, checkpoint_dir: Path, steps: int = 6) -> Trainer:
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[16])
    loss = ebmcore.create("loss", "pcd", buffer_size=100, k=3)
    return Trainer(model, loss, data=data(), steps=steps, batch_size=64, log_every=3,
                   checkpoint_dir=checkpoint_dir, checkpoint_every=3, seed=3,
                   distributed=distributed)


def result_of(trainer: Trainer) -> dict:
    return {"model": trainer.model.state_dict(), "ema": trainer.ema_model.state_dict(),
            "history": trainer.history}


def sample(distributed: bool):
    energy = ebmcore.create("energy", "gaussian", mean=[1.0, -1.0],
                            cov=[[1.0, 0.6], [0.6, 1.0]])
    sampler = ebmcore.create("sampler", "mala", step_size=0.5)
    x0 = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    # the torch backend: the fused numba one would spend seconds compiling in every process
    return sampler.sample(energy, x0, 200, burn_in=100, generator=torch.Generator().manual_seed(1),
                          return_trajectory=True, trace_chains=50, backend="torch",
                          distributed=distributed)


def scenario_all(rank: int, folder: Path) -> None:
    """Every training and sampling scenario, in one job of two ranks."""
    for source in ("tensor", "dataset"):
        trainer = exact_trainer(True, source, folder / f"exact-{source}")
        trainer.fit()
        if rank == 0:
            torch.save(result_of(trainer), folder / f"exact-{source}.pt")

    trainer = pcd_trainer(True, folder / "pcd")
    trainer.fit()
    torch.save({"buffer": trainer.loss.buffer, "buffer_size": trainer.loss.buffer_size,
                "history": trainer.history}, folder / f"pcd-rank{rank}.pt")

    # 1 -> 2: checkpoints written here by one process (before the spawn), resumed on two
    trainer = exact_trainer(True, steps=STEPS)
    trainer.resume(folder / "single-exact" / f"step-{HALF:09d}.pt")
    trainer.fit()
    if rank == 0:
        torch.save(result_of(trainer), folder / "resumed-1to2.pt")
    trainer = pcd_trainer(True, folder / "pcd-1to2")
    trainer.resume(folder / "single-pcd" / f"step-{3:09d}.pt")
    resumed = trainer.loss.buffer.clone()
    trainer.fit()
    torch.save({"resumed": resumed, "history": trainer.history},
               folder / f"pcd-1to2-rank{rank}.pt")

    result = sample(True)
    if rank == 0:
        torch.save({"samples": result.samples, "trajectory": result.trajectory,
                    "diagnostics": result.diagnostics}, folder / "sharded.pt")


def _fails_after(fault: Callable[[Trainer, object], None], rank: int, folder: Path) -> None:
    """Train with ``fault`` as a callback; record how long until this rank's error, and what."""
    trainer = exact_trainer(True, steps=10_000)
    trainer.callbacks = (fault,)
    started = time.monotonic()
    try:
        trainer.fit()
    except ebmcore.EbmcoreError as exc:
        Path(folder, f"rank{rank}.txt").write_text(
            f"{time.monotonic() - started:.3f}\n{type(exc).__name__}: {exc}")
        raise


def scenario_dies(rank: int, folder: Path) -> None:
    """Rank 1 dies at step 3; rank 0 must fail at once with a clear error."""
    def die(trainer: Trainer, _: object) -> None:
        if trainer.rank == 1 and trainer.step == 3:
            os._exit(1)

    _fails_after(die, rank, folder)


def scenario_hangs(rank: int, folder: Path) -> None:
    """Rank 1 stops answering at step 3; rank 0 must fail within the group's timeout."""
    def hang(trainer: Trainer, _: object) -> None:
        if trainer.rank == 1 and trainer.step == 3:
            time.sleep(HANG_TIMEOUT + 2)  # alive, so rank 0 meets a timeout, not a closed socket
            os._exit(0)

    _fails_after(hang, rank, folder)


#: The process-group timeout of the silent-rank scenario.
HANG_TIMEOUT = 2

SCENARIOS = {"all": scenario_all, "dies": scenario_dies, "hangs": scenario_hangs}


# -- the job and the one-process references ----------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    exact_trainer(False, checkpoint_dir=folder / "single-exact", steps=HALF).fit()
    pcd_trainer(False, folder / "single-pcd", steps=3).fit()
    codes = spawn("all", folder)
    assert codes == [0, 0], errors(folder)
    return folder


@pytest.fixture(scope="module")
def single() -> dict:
    """The one-process run the two-rank runs must equal."""
    trainer = exact_trainer(False)
    trainer.fit()
    return result_of(trainer)


def assert_same_run(mine: dict, reference: dict) -> None:
    """Weights, EMA and logged loss agree to float32 rounding (summation order differs)."""
    for part in ("model", "ema"):
        for key, value in reference[part].items():
            torch.testing.assert_close(mine[part][key], value, rtol=1e-4, atol=1e-6,
                                       msg=f"{part}.{key}")
    assert [r["step"] for r in mine["history"]] == [r["step"] for r in reference["history"]]
    for a, b in zip(mine["history"], reference["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
        assert a["laplacian"] == pytest.approx(b["laplacian"], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("source", ["tensor", "dataset"])
def test_two_ranks_train_like_one_on_the_same_global_batch(job, single, source):
    if source == "tensor":
        reference = single
    else:
        trainer = exact_trainer(False, "dataset")
        trainer.fit()
        reference = result_of(trainer)
    assert_same_run(torch.load(job / f"exact-{source}.pt"), reference)


def test_each_rank_keeps_its_own_chains_and_the_checkpoint_holds_them_all(job):
    ranks = [torch.load(job / f"pcd-rank{r}.pt") for r in range(2)]
    assert [r["buffer_size"] for r in ranks] == [50, 50]  # 100 chains over two ranks
    assert [tuple(r["buffer"].shape) for r in ranks] == [(50, 2), (50, 2)]
    assert not torch.equal(ranks[0]["buffer"], ranks[1]["buffer"])
    # the logged metrics are averaged over the ranks (the wall time is each rank's own)
    logged = [[{k: v for k, v in row.items() if k != "seconds"} for row in r["history"]]
              for r in ranks]
    assert logged[0] == logged[1]
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in ranks[0]["history"])
    state = load_checkpoint(job / "pcd" / f"step-{6:09d}.pt")
    assert torch.equal(state["loss"]["buffer"], torch.cat([r["buffer"] for r in ranks]))
    assert state["ranks"]["world_size"] == 2
    streams = state["ranks"]["loss"]
    assert len(streams) == 2 and not torch.equal(streams[0], streams[1])
    assert not (job / "pcd-1to2" / f"step-{3:09d}.pt").exists()  # resumed after step 3


def test_two_rank_checkpoints_resume_on_one_rank(job, single, tmp_path):
    trainer = exact_trainer(False)
    trainer.resume(job / "exact-tensor" / f"step-{HALF:09d}.pt")
    trainer.fit()
    assert_same_run(result_of(trainer), single)

    trainer = pcd_trainer(False, tmp_path, steps=6)
    written = load_checkpoint(job / "pcd" / f"step-{3:09d}.pt")["loss"]["buffer"]
    trainer.resume(job / "pcd" / f"step-{3:09d}.pt")
    assert trainer.loss.buffer_size == 100 and torch.equal(trainer.loss.buffer, written)
    history = trainer.fit()
    assert history[-1]["step"] == 6 and torch.isfinite(torch.tensor(history[-1]["loss"]))


def test_one_rank_checkpoints_resume_on_two_ranks(job, single):
    assert_same_run(torch.load(job / "resumed-1to2.pt"), single)
    written = load_checkpoint(job / "single-pcd" / f"step-{3:09d}.pt")["loss"]["buffer"]
    parts = [torch.load(job / f"pcd-1to2-rank{r}.pt") for r in range(2)]
    assert torch.equal(parts[0]["resumed"], written[:50])
    assert torch.equal(parts[1]["resumed"], written[50:])
    assert parts[0]["history"][-1]["step"] == 6


def test_sharded_sampling_gives_the_statistics_of_unsharded_sampling(job):
    from ebmcore.runs import chain_diagnostics

    sharded = torch.load(job / "sharded.pt")
    whole = sample(False)
    samples, trajectory, diag = sharded["samples"], sharded["trajectory"], sharded["diagnostics"]
    assert samples.shape == whole.samples.shape == (400, 2)
    assert trajectory.shape == whole.trajectory.shape == (200, 50, 2)
    # the traced chains are chains 0, 8, 16, ... of the whole batch, as unsharded
    assert torch.equal(trajectory[-1], samples[::8])
    assert diag["shards"] == [[0, 200], [200, 400]] and diag["world_size"] == 2
    assert diag["acceptance"].shape == diag["step_size"].shape == (400,)
    assert diag["trajectory_stride"] == 8
    # same target, independent chains: moments agree within Monte Carlo error
    mean = torch.tensor([1.0, -1.0])
    for draws in (trajectory, whole.trajectory):
        flat = draws.reshape(-1, 2).double()
        assert torch.allclose(flat.mean(0), mean.double(), atol=0.06)
        assert torch.allclose(torch.cov(flat.T), torch.tensor([[1.0, 0.6], [0.6, 1.0]]).double(),
                              atol=0.1)
        report = chain_diagnostics(draws)
        assert report["rhat"]["max"] < 1.05 and report["n_chains"] == 50
    assert float(diag["acceptance"].mean()) == pytest.approx(
        float(whole.diagnostics["acceptance"].mean()), abs=0.05)


def test_a_rank_that_dies_ends_the_job_with_a_clear_error_at_once(tmp_path):
    codes = spawn("dies", tmp_path)
    assert codes[1] == 1 and codes[0] != 0
    seconds, message = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    assert message.startswith("DistributedError: rank 0 of 2: ") and " failed: " in message
    assert "another rank stopped" in message
    assert float(seconds) < GROUP_TIMEOUT  # gloo sees the closed connection, no wait


def test_a_silent_rank_ends_the_job_within_the_timeout(tmp_path):
    codes = spawn("hangs", tmp_path, timeout=HANG_TIMEOUT)
    assert codes[0] != 0
    seconds, message = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    assert message.startswith("DistributedError: rank 0 of 2:")
    assert HANG_TIMEOUT - 0.5 < float(seconds) < HANG_TIMEOUT + 10
