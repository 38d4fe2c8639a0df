"""Smoke test of benchmarks/samplers.py: it runs, and each floor computes what its sampler does."""

from __future__ import annotations

import io

import pytest
import torch
from benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("samplers")


def test_floors_compute_the_same_numbers(bench) -> None:
    cases = bench.make_cases(quick=True)
    assert len(cases) == 5
    for case in cases:
        a = case.sampler()
        assert torch.isfinite(a).all(), case.name
        floors = [case.floor] + ([case.floor_energy] if case.floor_energy else [])
        for floor in floors:
            b = floor()
            # Same seed, same mathematics, same order of operations: the same bits.
            assert torch.equal(a, b), f"{case.name}: max diff {float((a - b).abs().max())}"


def test_run_reports_ratios(bench) -> None:
    cases = bench.make_cases(quick=True)
    cases = [cases[0], cases[-1]]  # with and without an energy floor
    out = io.StringIO()
    rows = bench.run(cases, repeats=2, out=out)
    assert rows[0]["min"] <= rows[0]["median"] <= rows[0]["max"]
    assert "energy_cpu_median" in rows[0] and "energy_cpu_median" not in rows[1]
    assert cases[0].name in out.getvalue() and cases[1].name in out.getvalue()
