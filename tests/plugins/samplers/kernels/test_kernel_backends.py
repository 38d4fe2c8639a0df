"""The fused kernels as backend objects: registered by the plugin, kept to the contract by
the kit's ``check_backend``, and timed by ``auto`` on long runs without touching the bits."""

from __future__ import annotations

import pytest
import torch
from ebmcore_samplers.kernels.backend import CudaBackend, FusedKernelSampler, NumbaBackend
from kernel_helpers import fused, gaussian2

import ebmcore
from ebmcore.sampling import RunSpec, auto, clear_auto_cache
from ebmcore.testing.sampler_checks import check_backend

X = torch.randn(40, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def test_the_plugin_registers_the_built_in_backends() -> None:
    assert ebmcore.names("backend") == ["async", "compiled", "cuda", "numba"]
    assert isinstance(ebmcore.create("backend", "numba"), NumbaBackend)
    assert isinstance(ebmcore.create("backend", "cuda"), CudaBackend)


@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_numba_keeps_the_backend_contract(method: str) -> None:
    sampler = fused(method, step_size=0.1)
    check_backend("numba", sampler, gaussian2(), X, trace_chains=7)


def test_the_kit_catches_a_backend_that_breaks_a_promise(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    real = NumbaBackend.run

    def unseeded(self, sampler, energy, x0, run, generator):  # noqa: ANN001 - a test double
        return real(self, sampler, energy, x0, run, torch.Generator().manual_seed(
            int(torch.randint(1 << 30, (1,)))))

    monkeypatch.setattr(NumbaBackend, "run", unseeded)
    with pytest.raises(AssertionError, match="same seed gave different samples"):
        check_backend("numba", fused("langevin", step_size=0.1), gaussian2(), X)


def test_a_sampler_without_a_kernel_is_refused_with_the_reason() -> None:
    sampler = ebmcore.create("sampler", "nuts", step_size=0.1)
    assert not isinstance(sampler, FusedKernelSampler)
    why = NumbaBackend().supports(sampler, gaussian2(), X, RunSpec(n_steps=3))
    assert why == "NUTS has no fused kernel"


def test_auto_times_the_fused_kernel_on_a_long_run_and_keeps_its_bits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "MEASURE_MIN_WORK", 1)
    monkeypatch.setattr(auto, "MEASURE_MIN_STEPS", 60)
    clear_auto_cache()
    sampler = fused("mala", step_size=0.3)
    try:
        r = sampler.sample(gaussian2(), X, 60, generator=torch.Generator().manual_seed(9))
    finally:
        clear_auto_cache()
    d = r.diagnostics
    assert d["backend_reason"].startswith("measured: predicted")
    assert "numba" in d["backend_reason"] and "torch" in d["backend_reason"]
    want = sampler.sample(gaussian2(), X, 60, backend=d["backend"],
                          generator=torch.Generator().manual_seed(9))
    assert torch.equal(r.samples, want.samples)
