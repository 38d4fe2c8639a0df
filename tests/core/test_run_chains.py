"""Tests of ebmcore.runs.chains: the chain report a run writes, and its mixing warning."""

from __future__ import annotations

import torch

from ebmcore.runs.chains import RHAT_LIMIT, chain_diagnostics


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
