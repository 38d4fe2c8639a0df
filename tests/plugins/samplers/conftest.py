"""Fixtures of the core-sampler tests (helpers live in core_sampler_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from core_sampler_helpers import Counting

from ebmcore.testing.sampler_checks import GaussianTarget, correlated_gaussian


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run each test on one torch thread: on a busy machine a second thread only stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def gauss2() -> GaussianTarget:
    """The correlated 2-D Gaussian of ``check_sampler``."""
    return correlated_gaussian(2)


@pytest.fixture
def counting() -> type[Counting]:
    """The counting wrapper class."""
    return Counting
