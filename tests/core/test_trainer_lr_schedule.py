"""The Trainer's ``lr_schedule``: a half cosine from ``lr`` towards 0 over the run."""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore
from ebmcore.config import defaults_for
from ebmcore.train import Trainer


def _trainer(tmp_path=None, steps=12, **kw):
    torch.manual_seed(5)
    model = ebmcore.create("model", "mlp_field", dim=2, hidden=(16, 16))
    return Trainer(model, "flow_matching", data="eight_gaussians", steps=steps, batch_size=16,
                   lr=0.01, seed=3, log_every=4, checkpoint_dir=tmp_path,
                   checkpoint_every=6 if tmp_path is not None else None, **kw)


def test_cosine_sets_each_steps_rate_on_the_half_cosine():
    seen: list[float] = []
    trainer = _trainer(lr_schedule="cosine",
                       callbacks=[lambda t, out: seen.append(t.optimizer.param_groups[0]["lr"])])
    trainer.fit()
    expected = [0.005 * (1 + math.cos(math.pi * s / 12)) for s in range(12)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[0] == 0.01 and seen[-1] < 0.01 * 0.02


def test_without_a_schedule_the_rate_stays_and_the_schedule_changes_the_weights():
    seen: list[float] = []
    flat = _trainer(callbacks=[lambda t, out: seen.append(t.optimizer.param_groups[0]["lr"])])
    flat.fit()
    assert set(seen) == {0.01}
    cosine = _trainer(lr_schedule="cosine")
    cosine.fit()
    a = torch.cat([p.flatten() for p in flat.model.parameters()])
    b = torch.cat([p.flatten() for p in cosine.model.parameters()])
    assert not torch.equal(a, b)


def test_a_resumed_cosine_run_continues_on_the_curve_bit_for_bit(tmp_path):
    full = _trainer(tmp_path / "full", lr_schedule="cosine")
    full.fit()
    resumed = _trainer(tmp_path / "resumed", lr_schedule="cosine")
    resumed.resume(tmp_path / "full" / "step-000000006.pt")
    resumed.fit()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_an_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        _trainer(lr_schedule="linear")


def test_the_2d_flow_matching_recipe_decays_its_rate():
    train = defaults_for("rings", "flow_matching")["train"]
    assert train["lr_schedule"] == "cosine" and train["steps"] == 80000
    # the other field losses keep the shared recipe
    assert "lr_schedule" not in defaults_for("rings", "diffusion")["train"]
