"""End to end: the digits recipe learns more than the data's Gaussian, and its samples cover
the classes, judged on the held-out split with likelihood bounds from AIS."""

from __future__ import annotations

import pytest
import torch

from ebmcore.config import apply_overrides, defaults_for
from ebmcore.runs import train_run

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_digits_recipe_beats_the_gaussian_baseline_and_covers_the_classes(tmp_path):
    """500 of the recipe's 1,500 steps (about 1 min on one core, plus ~20 s of evaluation).

    Measured for seed 0 (docs/training-results.md): AIS bracket 55.66 to 55.68 nats per
    image against the Gaussian's exact 51.20; samples in all 10 classes, the largest 18%.
    The test and the baseline share the held-out images, so their difference is far more
    precise than either figure's standard error (0.6); the margin asked for is three times
    that error all the same (about 1.9 nats). A model like the old ones (a wall instead of
    the Gaussian base: 16.1 to 4.0 nats) or one whose energies run away fails here.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = apply_overrides(defaults_for("digits"), ["train.steps=500"])
        metrics = train_run(config, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    report = metrics["image_evaluation"]
    gaussian = report["baselines"]["gaussian"]["log_likelihood"]
    bounds = report["likelihood"]
    assert bounds["lower"] > gaussian + 3 * bounds["lower_stderr"], (bounds, gaussian)
    assert report["coverage"]["classes_covered"] >= 8, report["coverage"]
    assert report["coverage"]["max_share"] <= 0.25, report["coverage"]
    assert (tmp_path / "run" / "samples.png").is_file()
