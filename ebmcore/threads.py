"""How many CPU threads torch (and numba) run on: as many as the work repays, and no more.

Torch's default is one intra-op thread per core. For the small models ebmcore mostly trains
that is a loss, and on a busy machine a disaster: OpenMP's threads wait for each other at
the end of every operation, and when another process holds a core the wait is a whole
scheduler slice. :func:`fit_threads` is the one place the rule lives; the trainer and the
command line call it.

The measurements behind the rule (torch 2.13 CPU, the 2-core machine of issue 22;
``benchmarks/threads.py`` reruns them):

- The demo recipe's training step (mlp with four hidden layers of 128, pcd with 20 Langevin
  steps on 256 chains: about 1.3e7 multiply-adds per forward pass of the batch) took 0.025 s
  on an idle machine on one thread and on two alike; with one other busy process it took
  0.41 s on two threads and 0.022 s on one (issue 22): a second thread pays nothing at this
  size and costs 19x on a busy machine.
- With four other sessions' work on the machine (load 5 to 9), alternating blocks of demo
  steps with and without one more spinning process: on one thread the spinner slowed the step
  2.08x (median of 8 rounds, 1.97-2.35), exactly as much as it slowed a single-threaded
  pure-Python loop (2.00x, the CPU share alone); on two threads 3.6x (1.25-6.7).
- A training step of a two-layer mlp (denoising score matching, Adam) on two threads against
  one, by the step's work (batch x parameters), on that loaded machine: 0.07x at 4.4e6,
  0.13x at 1.7e7, 0.11x at 6.8e7, 0.31x at 2.7e8, 0.54x at 1.1e9, 0.84x at 4.3e9. A
  second thread lost everywhere there, less the larger the work. (No idle machine was to be
  had for this sweep, so the gain a free core gives large operations is not measured here.)

So a second thread is used only from :data:`PARALLEL_WORK` (1e9) multiply-adds per forward
pass on, where a busy machine loses at most about 2x, and one more per
further :data:`PARALLEL_WORK`, up to the CPUs this process may use. The work is counted as
batch rows times parameters, which undercounts convolutions (each weight is used once per
output position): for them pass ``threads`` or ``EBMCORE_THREADS``.
"""

from __future__ import annotations

import os
import sys

import torch

from ebmcore.validation import check_int

#: The environment variable that overrides the rule (a positive integer).
THREADS_ENV = "EBMCORE_THREADS"

#: Work (multiply-adds of one forward pass over a batch) from which a second thread pays.
PARALLEL_WORK = 1_000_000_000


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform says, else all)."""
    if sys.platform.startswith("linux"):  # macOS and Windows have no affinity call
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_for(work: int | None) -> int:
    """The rule: the threads a job of ``work`` multiply-adds per operation repays.

    One thread below :data:`PARALLEL_WORK` (and when the work is unknown), two from it on,
    and one more for every further :data:`PARALLEL_WORK`, up to :func:`available_cpus`.

    Args:
        work: Multiply-adds of one forward pass over a batch (batch x parameters for a
            dense model), or ``None`` when unknown.
    """
    if work is None:
        return 1
    check_int("work", work, minimum=0)
    return min(available_cpus(), 1 + work // PARALLEL_WORK)


def _env_threads() -> int | None:
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
    return threads


def fit_threads(requested: int | None = None, *, work: int | None = None) -> int:
    """Set torch's (and numba's) CPU thread counts for the work, and return the count used.

    ``requested`` wins; else the environment variable ``EBMCORE_THREADS``; else the rule
    (:func:`threads_for`: one thread for small work). numba's count is set first (capped at
    ``numba.config.NUMBA_NUM_THREADS``) and torch's after it, because starting numba's
    thread pool resets the OpenMP thread count that torch shares.

    Args:
        requested: Threads asked for (a positive integer), or ``None`` to decide.
        work: Multiply-adds of one forward pass over a batch, for the rule.

    Raises:
        ValueError: When ``requested`` or ``EBMCORE_THREADS`` is not a positive integer.
    """
    if requested is not None:
        threads = check_int("threads", requested, minimum=1)
    else:
        threads = _env_threads() or threads_for(work)
    try:
        import numba
    except ImportError:  # numba is optional here: torch alone still gets its count
        pass
    else:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
