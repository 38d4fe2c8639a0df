"""``benchmarks/digits_energy_spans.py``: the descent it judges is the run's sampler's, step
for step, on the weights the checkpoint holds (its EMA when kept)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch
from benchmark_modules import load_benchmark

import ebmcore
from ebmcore.checkpoint import save_checkpoint
from ebmcore.config import dump_toml
from ebmcore.runs.field_images import image_sample_report

pytest.importorskip("sklearn")


def load_spans() -> ModuleType:
    """Import ``benchmarks/digits_energy_spans.py`` as a module (once per session)."""
    return load_benchmark("digits_energy_spans")


def tiny_energy(seed: int) -> torch.nn.Module:
    """A small ``unet_energy`` whose U-Net output is not zero (its last layer is drawn)."""
    torch.manual_seed(seed)
    energy = ebmcore.create("model", "unet_energy", event_shape=[1, 8, 8], channels=[8])
    torch.nn.init.normal_(energy.net.head[-1].weight, std=0.05)
    return energy


def test_the_spans_are_the_runs_descent_judged_by_the_runs_judge(tmp_path: Path) -> None:
    spans = load_spans()
    ema, raw = tiny_energy(1), tiny_energy(2)
    config = {"model": {"name": "unet_energy",
                        "params": {"event_shape": [1, 8, 8], "channels": [8]}},
              "sampler": {"name": "gradient_descent", "params": {"step_size": 0.03}},
              "loss": {"name": "energy_matching", "params": {"epsilon_max": 0.15}}}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.toml").write_text(dump_toml(config))
    save_checkpoint(tmp_path / "checkpoints" / "step-000000007.pt",
                    {"model": raw.state_dict(), "ema": ema.state_dict()})
    energy, step, eps = spans.load_energy(tmp_path)
    assert (step, eps) == (0.03, 0.15)
    digits = ebmcore.create("dataset", "digits")
    rows = spans.judge_spans(energy, digits, [0.6, 1.0], [5], 60, step, eps)
    assert [r["steps"] for r in rows] == [3, 5]  # 0.2 time units a step
    # the same descent by hand, on the EMA weights, judged alike
    x = torch.randn((60, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for _ in range(5):
            x = x - 0.03 * ema.grad(x)
    report = image_sample_report(digits, x, seed=0)
    assert rows[1]["confident"] == [report["logistic_coverage"]["confident_share"]]
    assert rows[1]["frechet"][0] == pytest.approx(report["frechet"]["ratio"], rel=1e-5)
    assert rows[1]["classes"] == report["logistic_coverage"]["classes_covered"]


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.toml"):
        load_spans().load_energy(tmp_path)
    (tmp_path / "config.toml").write_text("")
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        load_spans().load_energy(tmp_path)


@pytest.mark.parametrize(("spans", "seeds", "n"), [([], [1], 5), ([1.0, 0.5], [1], 5),
                                                  ([1.0], [], 5), ([1.0], [1], 0)])
def test_bad_arguments_are_refused(spans: list[float], seeds: list[int], n: int) -> None:
    with pytest.raises(ValueError, match="spans|seeds|n, step_size"):
        load_spans().judge_spans(tiny_energy(0), ebmcore.create("dataset", "digits"), spans,
                                 seeds, n, 0.03, 0.15)
