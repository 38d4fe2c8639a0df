"""Smoke test of ``benchmarks/gpu_table.py`` without a GPU.

The script runs in a subprocess on the CPU with ``NUMBA_ENABLE_CUDASIM=1`` (the simulator
must be on before numba is imported, and the script starts one process per library
anyway), at the tiniest sizes: 2 chains x 1 step per case. About 30 s on a 2-core machine,
most of it compiling the numba kernels that ``auto`` picks on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = ROOT / "benchmarks" / "gpu_table.py"
RATE = re.compile(r"^\d\.\d\de\d+$")  # the table's number format, e.g. 5.50e10
#: The issue's cases (gpu_table.CASES), listed here so that dropping one fails this test.
CASE_KEYS = ["dw_langevin_1M", "dw_langevin_1k", "dw_mala_1M", "dw_mala_1k", "dw_hmc_1M",
             "mix_langevin_1M", "mix_hmc_1M", "g100_langevin_100k", "g100_mala_100k"]


@pytest.mark.slow
def test_gpu_table_runs_every_case_under_the_simulator(tmp_path: Path) -> None:
    out_json = tmp_path / "table.json"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--scale", "1e-9",
           "--steps-scale", "1e-9", "--json", str(out_json)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail

    table = json.loads(out_json.read_text())
    assert [row["key"] for row in table["rows"]] == CASE_KEYS, tail
    assert table["simulator"] is True
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case "))
    for i, row in enumerate(table["rows"]):
        assert (row["chains"], row["steps"]) == (2, 1), row
        for column in ("floor", "torch", "cuda", "auto"):
            cell = row["cells"][column]
            assert cell is not None and cell["status"] == "ok", (row["key"], column, tail)
            assert cell["rate"] > 0
        assert row["cells"]["auto"]["note"] in ("torch", "numba"), row  # the backend it ran
        # The printed row: its label, then numbers in the floor, torch, cuda, auto columns.
        line = lines[header + 2 + i]
        assert line.startswith(row["label"]), (line, row["label"])
        cells = line[len(row["label"]):].split()
        assert all(RATE.match(v) for v in cells[:4]), line
    assert "ebmcore cuda / torch floor" in done.stdout
    assert "ebmcore cuda / BlackJAX" in done.stdout
