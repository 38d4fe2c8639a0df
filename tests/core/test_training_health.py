"""The health policies on their own: the finiteness watch, skipping and the runaway check."""

from __future__ import annotations

import math

import torch

from ebmcore.errors import TrainingDivergedError
from ebmcore.loss import LossOutput
from ebmcore.ranks import RankGroup
from ebmcore.training import health


def test_the_watch_keeps_the_first_bad_step_and_its_quantities():
    watch = health.FiniteWatch()
    assert watch.first() is None
    params = [torch.nn.Parameter(torch.ones(2))]
    params[0].grad = torch.ones(2)
    good = LossOutput(torch.tensor(1.0), {"energy_pos": torch.tensor(2.0)})
    health.watch_step(watch, 1, good, params)
    assert watch.first() is None
    negatives = torch.tensor([[0.0, 1.0], [math.nan, 0.0], [math.inf, 1.0]])
    bad = LossOutput(torch.tensor(math.nan), {"energy_pos": torch.tensor(2.0)}, negatives)
    health.watch_step(watch, 2, bad, params)
    later = LossOutput(torch.tensor(math.inf), {}, None)
    health.watch_step(watch, 3, later, params)  # names change: the first bad step stays
    step, found = watch.first()
    assert step == 2 and list(found) == ["negatives", "loss"] and found["negatives"] == 2.0
    error = health.nonfinite_error((step, found), watch, lr=0.5, last_checkpoint=None)
    assert isinstance(error, TrainingDivergedError) and error.step == 2
    assert str(error).startswith("training diverged at step 2: the negative samples turned "
                                 "non-finite in 2 rows")
    assert "lr=0.5) or the sampler's step size" in str(error)
    assert "no checkpoint was written before it" in str(error)


def test_the_watch_finds_the_first_bad_gradient_past_its_buffer():
    """Steps are buffered on the device and folded every ROWS steps: a bad gradient two
    buffers in is named with its step, its largest magnitude and nothing else; a later bad
    step does not replace it."""
    watch = health.FiniteWatch()
    p = torch.nn.Parameter(torch.zeros(3))
    bad_step = 2 * health.FiniteWatch.ROWS + 5
    for step in range(1, 3 * health.FiniteWatch.ROWS):
        p.grad = torch.tensor([-4.0, 1.0, 2.0])
        if step == bad_step:
            p.grad[0] = -math.inf
        loss = math.nan if step > bad_step + 3 else 1.0
        health.watch_step(watch, step, LossOutput(torch.tensor(loss)), [p])
        if step == bad_step - 1:
            assert watch.first() is None  # a read folds the partial buffer
    assert watch.first() == (bad_step, {"gradient": math.inf})
    healthy = health.FiniteWatch()
    for step in range(1, health.FiniteWatch.ROWS + 2):
        health.watch_step(healthy, step, LossOutput(torch.tensor(1.0)), [p])
    assert healthy.first() is None


def test_the_words_for_several_quantities():
    assert health.describe_nonfinite({"loss": math.nan}) == "the loss = nan"
    assert health.describe_nonfinite({"energy_pos": math.inf, "loss": math.nan,
                                      "gradient": math.nan}) == (
        "energy_pos = inf, then the loss = nan and a parameter gradient = nan")


def test_all_finite_and_too_many_skipped():
    p = torch.nn.Parameter(torch.ones(1))
    p.grad = torch.tensor([math.inf])
    out = LossOutput(torch.tensor(1.0))
    assert not health.all_finite(out, [p], RankGroup())
    p.grad = torch.ones(1)
    assert health.all_finite(out, [p], RankGroup())
    ten = list(range(5, 5 + health.MAX_SKIPPED_IN_A_ROW))
    assert health.too_many_skipped(ten, ten[-1])
    assert not health.too_many_skipped(ten[1:], ten[-1])
    assert not health.too_many_skipped([1, *ten[1:]], ten[-1])  # not in a row


def test_runaway_looks_at_the_loss_and_energy_metrics_only():
    record = {"step": 4e9, "loss": 1.0, "accuracy": 5e9, "energy_neg": -2e3}
    assert health.runaway_in(record, 1e3) == ("energy_neg", -2e3)
    assert health.runaway_in(record, None) is None
    assert health.runaway_in(record, 1e4) is None
    assert "step 7: loss = 1.2e+04 exceeds 1000" in health.runaway_message(7, "loss", 1.2e4,
                                                                             1e3)
