"""Devices are compared by meaning: ``cuda`` is the current CUDA device (issue 13, defect 1)."""

from __future__ import annotations

import pytest
import torch

from ebmcore.validation import same_device


@pytest.fixture
def current_cuda_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cpu_is_cpu() -> None:
    assert same_device("cpu", "cpu")
    assert same_device(torch.device("cpu"), "cpu")
    assert same_device(torch.device("cpu"), torch.device("cpu:0"))


def test_cuda_without_index_is_the_current_device(current_cuda_0: None) -> None:
    assert same_device("cuda", "cuda:0")
    assert same_device(torch.device("cuda:0"), torch.device("cuda"))
    assert same_device("cuda", torch.device("cuda"))
    assert not same_device("cuda", "cuda:1")


def test_cuda_follows_the_current_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert same_device("cuda", "cuda:1")
    assert not same_device("cuda", "cuda:0")


def test_without_cuda_no_index_means_index_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert same_device("cuda", "cuda:0")
    assert not same_device("cuda", "cuda:1")


def test_different_indices_and_types_differ(current_cuda_0: None) -> None:
    assert not same_device("cuda:0", "cuda:1")
    assert not same_device(torch.device("cuda:0"), torch.device("cuda:1"))
    assert not same_device("cpu", "cuda")
    assert not same_device(torch.device("cuda:0"), "cpu")
    assert not same_device("meta", "cpu")


def test_a_loss_compares_its_generator_by_meaning(current_cuda_0: None) -> None:
    """A loss's generator_for uses the rule (stand-ins carry the devices; no GPU needed)."""
    from types import SimpleNamespace

    from ebmcore_losses._common import StochasticLoss

    loss = StochasticLoss()
    loss._generator = SimpleNamespace(device=torch.device("cuda"))
    assert loss.generator_for(SimpleNamespace(device=torch.device("cuda:0"))) is loss._generator
    with pytest.raises(ValueError, match="generator is on cuda but the data is on cuda:1"):
        loss.generator_for(SimpleNamespace(device=torch.device("cuda:1")))
