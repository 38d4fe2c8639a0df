"""The CUDA kernels on a real GPU (skipped without one; ``benchmarks/gpu.sh`` runs them).

On a GPU the kernels take torch CUDA tensors without copies and run on torch's current
stream. NVVM may fuse multiply-adds, so GPU and CPU bits may differ in the last place;
these tests compare distributions and repeatability on the GPU itself.
"""

from __future__ import annotations

import pytest
import torch
from ebmcore_samplers.kernels import auto_backend, dispatch
from kernel_helpers import assert_within, fused, gaussian2, moment_z, truth, two_sample_z

from ebmcore.errors import BackendUnavailableError

GPU_REASON = None
if not torch.cuda.is_available():
    GPU_REASON = "torch sees no CUDA GPU"
elif dispatch.simulated():
    GPU_REASON = "the CUDA simulator is on"
elif dispatch.cuda_reason() is not None:
    GPU_REASON = dispatch.cuda_reason()

pytestmark = pytest.mark.skipif(GPU_REASON is not None, reason=f"needs a GPU: {GPU_REASON}")

SETTINGS = {
    "langevin": dict(step_size=0.05),
    "mala": dict(step_size=0.5, adapt_step_size=True),
    "hmc": dict(step_size=0.4, n_leapfrog=5, adapt_step_size=True),
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["mala", "hmc"])
def test_exact_samplers_on_the_gpu(method: str, dtype: torch.dtype) -> None:
    energy = gaussian2(dtype).cuda()
    mean, cov = truth(energy)
    x0 = torch.full((20_000, 2), 4.0, dtype=dtype, device="cuda")
    res = fused(method, **SETTINGS[method]).sample(energy, x0, 60, burn_in=150,
                                                   backend="cuda", generator=gen(1))
    assert res.samples.is_cuda and res.samples.dtype == dtype
    assert res.diagnostics["backend"] == "cuda"
    assert_within(moment_z(res.samples.cpu(), mean, cov))


@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_gpu_agrees_with_torch_on_the_gpu_and_repeats_its_bits(method: str) -> None:
    energy = gaussian2().cuda()
    x0 = torch.full((5_000, 2), 4.0, dtype=torch.float64, device="cuda")
    sampler = fused(method, **SETTINGS[method])
    a = sampler.sample(energy, x0, 100, burn_in=100, backend="cuda", generator=gen(2),
                       return_trajectory=True, thin=10)
    b = sampler.sample(energy, x0, 100, burn_in=100, backend="torch", generator=gen(3))
    assert_within(two_sample_z(a.samples.cpu(), b.samples.cpu()))
    again = sampler.sample(energy, x0, 100, burn_in=100, backend="cuda", generator=gen(2),
                           return_trajectory=True, thin=10)
    assert torch.equal(a.samples, again.samples) and torch.equal(a.trajectory, again.trajectory)


def test_kernel_runs_on_torchs_current_stream() -> None:
    energy = gaussian2().cuda()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x0 = torch.full((4096, 2), 4.0, dtype=torch.float64, device="cuda")
        res = fused("mala", step_size=0.5).sample(energy, x0, 50, backend="cuda",
                                                  generator=gen(4))
        total = res.samples.sum()  # ordered after the kernel on the same stream
    stream.synchronize()
    assert torch.isfinite(total)
    assert float((res.samples.mean(0).cpu() - truth(energy)[0]).abs().max()) < 1.0


def test_cuda_tensors_are_refused_by_numba_and_cpu_tensors_by_cuda() -> None:
    energy = gaussian2()
    with pytest.raises(BackendUnavailableError, match="numba backend runs CPU tensors"):
        fused("mala", step_size=0.1).sample(energy.cuda(), torch.zeros(4, 2, device="cuda",
                                                                      dtype=torch.float64),
                                            2, backend="numba", generator=gen(0))
    with pytest.raises(BackendUnavailableError, match="runs CUDA tensors"):
        fused("mala", step_size=0.1).sample(energy, torch.zeros(4, 2, dtype=torch.float64), 2,
                                            backend="cuda", generator=torch.Generator())


def test_auto_picks_cuda_for_cuda_tensors() -> None:
    energy = gaussian2().cuda()
    x = torch.zeros(10, 2, dtype=torch.float64, device="cuda")
    assert auto_backend("mala", energy, x) == "cuda"
