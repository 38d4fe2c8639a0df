"""fit_threads: the request, then EBMCORE_THREADS, then the rule; numba's count set first."""

from __future__ import annotations

import numba
import pytest
import torch

from ebmcore import threads
from ebmcore.threads import PARALLEL_WORK, THREADS_ENV, fit_threads, threads_for


@pytest.fixture(autouse=True)
def _restore_threads(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    yield
    numba.set_num_threads(numba_before)
    torch.set_num_threads(torch_before)


def test_the_rule_gives_small_work_one_thread(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    assert threads_for(None) == 1
    assert threads_for(0) == threads_for(PARALLEL_WORK - 1) == 1
    assert threads_for(PARALLEL_WORK) == threads_for(2 * PARALLEL_WORK - 1) == 2
    assert threads_for(2 * PARALLEL_WORK) == 3
    assert threads_for(100 * PARALLEL_WORK) == 4  # never more than the CPUs
    with pytest.raises(ValueError, match="work must be at least 0"):
        threads_for(-1)


def test_the_request_wins_then_the_environment_then_the_rule(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert fit_threads(work=10) == 1 and torch.get_num_threads() == 1
    assert numba.get_num_threads() == 1
    assert fit_threads(2, work=10) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv(THREADS_ENV, "2")
    assert fit_threads(work=10) == 2 and torch.get_num_threads() == 2
    assert fit_threads(1) == 1 and torch.get_num_threads() == 1


def test_bad_counts_are_named(monkeypatch):
    with pytest.raises(ValueError, match="threads must be at least 1"):
        fit_threads(0)
    with pytest.raises(TypeError, match="threads must be an integer"):
        fit_threads(1.5)
    for bad in ("zero", "0", "-2"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ValueError, match=f"{THREADS_ENV} must be a positive integer"):
            fit_threads()
    monkeypatch.setenv(THREADS_ENV, " ")
    assert fit_threads(work=1) == 1  # blank: unset


def test_the_trainer_applies_the_count(monkeypatch):
    import ebmcore
    from ebmcore.train import Trainer

    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    trainer = Trainer(model, "dsm", data="eight_gaussians", steps=1, batch_size=8)
    assert trainer.threads == 1 and torch.get_num_threads() == 1
    trainer = Trainer(model, "dsm", data="eight_gaussians", steps=1, batch_size=8, threads=2)
    assert trainer.threads == 2 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="threads must be at least 1"):
        Trainer(model, "dsm", data="eight_gaussians", threads=0)
