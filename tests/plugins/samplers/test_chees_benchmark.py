"""Smoke test of benchmarks/samplers_chees.py: it runs and prints one row per sampler."""

from __future__ import annotations

import pytest
from benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("samplers_chees")


def test_runs_and_prints_a_row_per_sampler(bench, capsys) -> None:
    code = bench.main(["--chains", "8", "--warmup", "30", "--draws", "20",
                       "--targets", "gaussian_100", "--samplers", "chees", "meads"])
    assert code == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("gaussian_100")]
    assert [row[1] for row in rows] == ["chees", "meads"]
    for row in rows:
        assert float(row[3]) > 0  # a finite, positive ESS
