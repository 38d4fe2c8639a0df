"""Tests of ebmcore.runs.chains: the chain report a run writes, and its mixing warning."""

from __future__ import annotations

import re

import torch

import ebmcore
from ebmcore.config import apply_overrides, check_train_config, defaults_for
from ebmcore.runs.chains import RHAT_LIMIT, RUN_FIX, chain_diagnostics
from ebmcore.runs.sampling import writing_sampler


def test_mixed_chains_carry_no_warning():
    # Independent draws from one distribution: R-hat is 1 up to noise far below the limit.
    draws = torch.randn(400, 16, 2, generator=torch.Generator().manual_seed(0))
    report = chain_diagnostics(draws)
    assert report["rhat"]["max"] < RHAT_LIMIT
    assert "warning" not in report


def test_chains_stuck_in_different_modes_are_flagged_with_the_fix():
    # Half the chains sit at -2, half at +2 (a double well's chains locked in their modes).
    gen = torch.Generator().manual_seed(1)
    modes = torch.tensor([-2.0, 2.0]).repeat_interleave(8)
    draws = modes[None, :, None] + 0.3 * torch.randn(400, 16, 1, generator=gen)
    report = chain_diagnostics(draws)
    assert report["rhat"]["max"] > RHAT_LIMIT
    assert "have not mixed" in report["warning"]
    assert "parallel_tempering" in report["warning"]


def test_too_short_chains_get_a_note_and_no_warning():
    report = chain_diagnostics(torch.zeros(2, 4, 1))
    assert report["rhat"] is None and "note" in report and "warning" not in report


def test_a_training_runs_warning_names_a_sample_sampler_that_builds():
    # A training run's fix is a [sample] setting, and the one it names is a valid sampler.
    modes = torch.tensor([-2.0, 2.0]).repeat_interleave(8)
    draws = modes[None, :, None] + 0.3 * torch.randn(400, 16, 1,
                                                     generator=torch.Generator().manual_seed(2))
    warning = chain_diagnostics(draws, fix=RUN_FIX)["warning"]
    assert "sample.sampler" in warning and "--sampler " not in warning
    item = re.search(r"--set '([^']+)'", warning).group(1)
    config = apply_overrides(defaults_for("digits"), [item])
    check_train_config(config)
    energy = ebmcore.create("energy", "gaussian", mean=[0.0])
    sampler = writing_sampler(energy, None, config["sample"])
    assert type(sampler).__name__ == "ParallelTempering"
