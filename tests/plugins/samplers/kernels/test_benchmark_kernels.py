"""Smoke test of ``benchmarks/kernels.py --sweep-only``: the grid behind ``auto`` runs and
reports, per case, both backends' times, the pick and how far it is from the faster one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[4] / "benchmarks" / "kernels.py"


@pytest.mark.slow
def test_the_sweep_reports_every_case_with_autos_pick(tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.json"
    # A subprocess: the script pins torch's and numba's thread pools for itself.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sweep-only", "--rounds", "1", "--energies",
         "dense_gaussian", "--methods", "mala", "--chains", "100", "--dtype", "float32",
         "float64", "--json", str(rows_file)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads(rows_file.read_text())
    # 4 dimensions x 2 dtypes, each once.
    assert sorted((r["dim"], r["dtype"]) for r in rows) == sorted(
        (d, t) for d in (2, 10, 32, 100) for t in ("float32", "float64"))
    for r in rows:
        assert r["torch_ns"] > 0 and r["fused_ns"] > 0 and r["auto"] in ("torch", "numba")
        assert r["auto_over_best"] >= 1.0
    assert "sweep: 4 cases (0 timed by auto), auto within 1.25x of the fastest on" in done.stdout
