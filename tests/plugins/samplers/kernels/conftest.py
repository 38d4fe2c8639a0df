"""Fixtures of the fused-kernel tests and the simulator switch.

Tests marked ``cudasim`` run the CUDA kernels in numba's simulator; it must be switched on
before numba is imported, so they run only in a process started with
``NUMBA_ENABLE_CUDASIM=1`` (``tests/test_cudasim_suite.py`` starts one) and are skipped
otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``cudasim`` tests unless the simulator is on."""
    if SIMULATOR:
        return
    skip = pytest.mark.skip(reason="CUDA simulator tests need NUMBA_ENABLE_CUDASIM=1 "
                                   "(tests/test_cudasim_suite.py runs them)")
    for item in items:
        if "cudasim" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
