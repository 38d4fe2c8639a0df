"""Trainer(compile=True): the negatives' chains on the compiled backend, resumable bit for bit."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.train import Trainer


def _trainer(tmp_path, **kwargs) -> Trainer:
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[16])
    loss = ebmcore.create("loss", "pcd", k=3, buffer_size=128,
                          sampler_params={"step_size": 0.01})
    return Trainer(model, loss, data="eight_gaussians", steps=4, batch_size=32, seed=0,
                   log_every=2, checkpoint_dir=tmp_path, checkpoint_every=2, compile=True,
                   **kwargs)


def test_compiled_training_runs_its_chains_compiled_and_resumes_exactly(tmp_path):
    first = _trainer(tmp_path / "a")
    assert first.compile and first.loss.backend == "compiled"
    history = first.fit()
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    again = _trainer(tmp_path / "b")
    again.resume(tmp_path / "a" / "step-000000002.pt")
    again.fit()
    for p, q in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(first.loss.buffer, again.loss.buffer)


def test_compile_needs_chains_on_a_sampler_with_a_compiled_backend():
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    with pytest.raises(ValueError, match="runs none"):
        Trainer(model, "sliced_score_matching", data="eight_gaussians", compile=True)
    nuts = ebmcore.create("sampler", "nuts", step_size=0.1)
    with pytest.raises(ValueError, match="NUTS has none"):
        Trainer(model, ebmcore.create("loss", "pcd", sampler=nuts), data="eight_gaussians",
                compile=True)
    with pytest.raises(TypeError, match="compile must be True or False"):
        Trainer(model, "pcd", data="eight_gaussians", compile="yes")
    with pytest.raises(ValueError, match="backend must be one of"):
        ebmcore.create("loss", "pcd", backend="fast")
