"""Starting ebmcore on several processes: torch.distributed.run for ``--nproc``, and joining.

``ebmcore train --nproc N`` (and ``sample``) does no process management of its own: it hands
the same command line to :func:`torch.distributed.run.run`, the engine behind ``torchrun``,
with ``--standalone --max-restarts 0``, so its elastic agent starts the N workers, gives them
their ranks and stops every one of them as soon as one fails. A worker recognises itself by
the environment a launcher sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``:
torchrun, ``ebmcore --nproc`` or a SLURM script that exports them) and joins the job with
:func:`joined`. This module imports torch only when it launches or joins, so the command
line stays light.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ebmcore.errors import DistributedError

if TYPE_CHECKING:
    from ebmcore.ranks import RankGroup

#: Seconds a rank waits for the others in a collective (and at start-up) before the job fails
#: with an error instead of hanging (``--dist-timeout``). A dead rank is usually noticed at
#: once: torchrun's agent stops the others, and gloo sees the closed connection.
DEFAULT_TIMEOUT = 300.0

#: The process-group backends ``--dist-backend`` accepts; ``auto`` is NCCL for a CUDA
#: device and gloo otherwise.
DIST_BACKENDS: tuple[str, ...] = ("auto", "gloo", "nccl")

#: Set in the workers' environment by :func:`launch`, so that a worker given ``--nproc``
#: (its command line is the parent's) joins the job instead of launching again.
LAUNCHED_ENV = "EBMCORE_NPROC_WORKER"

#: The environment variables a launcher sets for ``init_process_group("env://")``.
_LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

__all__ = ["DEFAULT_TIMEOUT", "DIST_BACKENDS", "LAUNCHED_ENV", "DistributedError",
           "choose_backend", "joined", "launch", "launched_world", "rank_prefix",
           "should_launch"]


def launched_world() -> tuple[int, int, int] | None:
    """Return ``(rank, local_rank, world_size)`` when a launcher started this process.

    ``None`` when the environment does not name a rank and a world size (a plain process).
    """
    if not all(name in os.environ for name in _LAUNCH_VARIABLES):
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise DistributedError(f"the launcher's environment is malformed: RANK="
                               f"{os.environ['RANK']!r}, WORLD_SIZE="
                               f"{os.environ['WORLD_SIZE']!r}") from None
    return rank, local, world


def rank_prefix() -> str:
    """``"[rank R] "`` in a worker of a job of several processes, else ``""`` (for messages)."""
    world = launched_world()
    return f"[rank {world[0]}] " if world is not None and world[2] > 1 else ""


def should_launch(nproc: int | None) -> bool:
    """Whether a command given ``--nproc nproc`` must launch its workers now.

    Raises:
        DistributedError: When ``--nproc`` is given to a process that a launcher other
            than ebmcore already started (torchrun gives the process count itself).
    """
    if nproc is None:
        return False
    if os.environ.get(LAUNCHED_ENV) == "1":
        return False  # a worker of ebmcore's own launch: its command line still says --nproc
    if launched_world() is not None:
        raise DistributedError(
            f"--nproc {nproc} launches its own workers through torch.distributed.run, but "
            f"this process was already started by a launcher (RANK={os.environ['RANK']}, "
            f"WORLD_SIZE={os.environ['WORLD_SIZE']}); leave --nproc out under torchrun")
    return nproc > 1


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``python -m ebmcore *argv`` in ``nproc`` processes on this machine and wait.

    The workers are started by :func:`torch.distributed.run.run` (what ``torchrun
    --standalone --nproc-per-node N --max-restarts 0 -m ebmcore ...`` does), which picks a free
    port, sets each worker's rank and, when one fails, stops the others.

    Args:
        argv: The ebmcore command line the workers run (``["train", "--out", ...]``).
        nproc: Number of processes (at least 2).

    Returns:
        0 when every worker succeeded; 128 + the signal's number when the workers were
        stopped by a signal (130 for SIGINT, 143 for SIGTERM: the run can be resumed).

    Raises:
        DistributedError: When a worker failed, naming its rank and how it ended.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        "--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
        "--monitor-interval=0.1", "-m", "ebmcore"])
    # set, not parsed: torchrun's parser would take --nproc in argv for its --nproc-per-node
    args.training_script_args = list(argv)
    previous = os.environ.get(LAUNCHED_ENV)
    os.environ[LAUNCHED_ENV] = "1"
    try:
        run(args)
    except ChildFailedError as exc:
        return _failure_status(exc)
    except SignalException as exc:
        # the agent passed the signal on to the workers and waited for them: they stopped at
        # a step boundary with a checkpoint (or were cut short) and said so themselves
        return 128 + int(exc.sigval)
    finally:
        if previous is None:
            os.environ.pop(LAUNCHED_ENV, None)
        else:
            os.environ[LAUNCHED_ENV] = previous
    return 0


def _first_failure(failures: dict[int, Any]) -> tuple[int, Any]:
    """The rank that failed first, and its failure.

    torch.distributed.run stamps a failure that left no error file (a signal) to the
    second, so a killed rank and the peers that then ended often share a stamp. Those peers
    end by SIGABRT (gloo aborts a rank whose peer vanished) or SIGTERM (the launcher stops
    the survivors; a worker's own SIGTERM handler exits with 143 instead): within one
    second such an end is taken as a consequence, and a lower rank only breaks the
    remaining ties.
    """
    consequences = {-int(signal.SIGABRT), -int(signal.SIGTERM)}
    rank = min(failures, key=lambda r: (failures[r].timestamp,
                                         failures[r].exitcode in consequences, r))
    return rank, failures[rank]


def _failure_status(exc: BaseException) -> int:
    """The exit status of a launch whose workers failed, or a DistributedError saying which."""
    failures = getattr(exc, "failures", {})
    codes = {failure.exitcode for failure in failures.values()}
    if codes and codes <= {130, 143}:
        return max(codes)  # stopped by a signal at a step boundary, checkpoint written
    rank, first = _first_failure(failures)
    code = first.exitcode
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    others = sorted(set(failures) - {rank})
    stopped = (f"; rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed "
               f"after it" if others else "; torch.distributed.run stopped the other ranks")
    raise DistributedError(f"rank {rank} (pid {first.pid}) {how}{stopped} (its own error, "
                           f"if it printed one, is above)") from None


def choose_backend(backend: str, device: str) -> str:
    """Return the process-group backend for ``backend`` (``auto``, ``gloo``, ``nccl``).

    ``auto`` is NCCL for a CUDA device and gloo otherwise.
    """
    if backend not in DIST_BACKENDS:
        raise ValueError(f"--dist-backend must be one of {', '.join(DIST_BACKENDS)}, got "
                         f"{backend!r}")
    if backend != "auto":
        return backend
    return "nccl" if str(device).startswith("cuda") else "gloo"


def _pin_device(device: str, backend: str, local_rank: int) -> None:
    """Make ``cuda`` mean this process's GPU: the local rank's (NCCL needs one GPU per
    process; gloo may share them round-robin)."""
    import torch

    cuda = str(device).startswith("cuda")
    if not cuda and backend != "nccl":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if backend == "nccl" and local_rank >= count:
        raise DistributedError(f"NCCL needs one GPU per process; local rank {local_rank} has "
                               f"none (torch sees {count}): start fewer processes per node, or "
                               f"use --dist-backend gloo")
    if count == 0:
        raise DistributedError(f"device {device!r} was asked for, but torch sees no CUDA device")
    torch.cuda.set_device(local_rank % count)


@contextlib.contextmanager
def joined(device: str = "cpu", backend: str = "auto",
           timeout: float = DEFAULT_TIMEOUT) -> Iterator[RankGroup]:
    """Join the job a launcher started this process in, for the ``with`` block.

    In a process started by torchrun (or ``ebmcore --nproc``, or anything that sets ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) with a world of two or more, this
    initialises the default process group from that environment, with ``timeout`` on every
    collective, pins a CUDA device to the local rank, and destroys the group on exit. A
    process group the caller already initialised is used as it is (and left alone).
    Elsewhere it yields a group of one process, and nothing is initialised.

    Args:
        device: The run's device (``cpu``, ``cuda``): picks the backend under ``auto`` and
            the CUDA device to pin.
        backend: ``auto``, ``gloo`` or ``nccl``.
        timeout: Seconds a collective waits for the other ranks before failing.

    Yields:
        This process's :class:`~ebmcore.ranks.RankGroup`.
    """
    from ebmcore.ranks import RankGroup
    from ebmcore.validation import check_positive

    chosen = choose_backend(backend, device)
    check_positive("--dist-timeout", timeout)
    world = launched_world()
    if world is None or world[2] == 1:
        yield RankGroup()
        return
    import torch.distributed as dist

    if dist.is_initialized():
        yield RankGroup.current("ebmcore")
        return
    _pin_device(device, chosen, world[1])
    dist.init_process_group(chosen, timeout=datetime.timedelta(seconds=timeout))
    try:
        yield RankGroup.current("ebmcore")
    except BaseException:
        dist.destroy_process_group()
        raise
    # The ranks tear the group down together: a rank that destroyed its gloo group while
    # another (rank 0, still writing the run's outputs) held it open aborted in gloo's
    # teardown ("terminate called without an active exception") in about one run in four.
    # Best effort: a barrier that times out (rank 0's evaluation outlasting the group's
    # timeout) must not fail a run whose work is done, so its error only skips the wait.
    with contextlib.suppress(RuntimeError, dist.DistBackendError):
        dist.barrier()
    dist.destroy_process_group()
