"""Run the CUDA-simulator tests in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``.

The simulator must be switched on before numba is imported, which a normal pytest process
has already done, hence the subprocess. The simulator's RNG emits RuntimeWarnings on
uint64 wrap-around by design; they are silenced there, never turned into errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_TESTS = ROOT / "tests" / "plugins" / "samplers" / "kernels"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                    reason="already inside the simulator run")
def test_cuda_kernels_pass_under_the_simulator() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    cmd = [sys.executable, "-m", "pytest", "-m", "cudasim", str(KERNEL_TESTS), "-q",
           "-p", "no:cacheprovider", "-W", "ignore::RuntimeWarning"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed and int(passed.group(1)) >= 6, tail
    assert "skipped" not in out.stdout.splitlines()[-1], tail
