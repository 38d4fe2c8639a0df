"""The CUDA kernels under numba's simulator (``NUMBA_ENABLE_CUDASIM=1``, a few hundred chains).

Skipped in a normal run; ``tests/test_cudasim_suite.py`` runs this file in a subprocess with
the simulator on. The simulator runs each thread in Python, so the CUDA path (kernel source,
launch, seeding, outputs) is checked here on CPU tensors, and compared with the numba CPU
kernel, which runs the same chain function: equal to within rounding, because the CPU
compiles energy faces with fast-math (fused multiply-adds, reordered sums) and the simulator
runs them in plain Python. Types are checked by the PTX test.
"""

from __future__ import annotations

import pytest
import torch
from ebmcore_samplers.kernels import dispatch
from kernel_helpers import assert_within, fused, gaussian2, moment_z, truth

pytestmark = pytest.mark.cudasim

SETTINGS = {
    "langevin": dict(step_size=0.05, grad_clip=5.0),
    "mala": dict(step_size=0.5, adapt_step_size=True),
    "hmc": dict(step_size=0.4, n_leapfrog=3, jitter=0.2, adapt_step_size=True),
}


def run(method: str, backend: str, x0: torch.Tensor, **kw: object):
    sampler = fused(method, **SETTINGS[method])
    return sampler.sample(gaussian2(x0.dtype), x0, 12, burn_in=6, thin=3,
                          return_trajectory=True, backend=backend,
                          generator=torch.Generator().manual_seed(5), **kw)


def test_the_simulator_is_on() -> None:
    assert dispatch.simulated()
    assert dispatch.cuda_reason() is None


@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_cuda_kernel_matches_the_cpu_kernel_to_rounding(method: str) -> None:
    x0 = torch.full((40, 2), 3.0, dtype=torch.float64)
    gpu = run(method, "cuda", x0)
    cpu = run(method, "numba", x0)
    assert gpu.diagnostics["backend"] == "cuda"
    close = dict(rtol=1e-12, atol=1e-12)  # a few float64 ulps: see the module docstring
    torch.testing.assert_close(gpu.samples, cpu.samples, **close)
    torch.testing.assert_close(gpu.trajectory, cpu.trajectory, **close)
    torch.testing.assert_close(gpu.diagnostics["energy_trace"],
                               cpu.diagnostics["energy_trace"], **close)
    if method != "langevin":
        # Acceptance is each chain's mean accept probability: equal to rounding too.
        torch.testing.assert_close(gpu.diagnostics["acceptance"],
                                   cpu.diagnostics["acceptance"], **close)
        torch.testing.assert_close(gpu.diagnostics["step_size"], cpu.diagnostics["step_size"],
                                   **close)
    assert torch.equal(x0, torch.full((40, 2), 3.0, dtype=torch.float64))  # x0 untouched


def test_float32_cuda_kernel_matches_the_cpu_kernel_to_rounding() -> None:
    # Both keep float32 chains in float64 scratch and round only when storing, so at most
    # the float32 rounding of a last-bit float64 difference separates them.
    x0 = torch.full((16, 2), 3.0, dtype=torch.float32)
    gpu = run("langevin", "cuda", x0)
    cpu = run("langevin", "numba", x0)
    assert gpu.samples.dtype == torch.float32
    torch.testing.assert_close(gpu.samples, cpu.samples, rtol=0, atol=1e-6)
    torch.testing.assert_close(gpu.trajectory, cpu.trajectory, rtol=0, atol=1e-6)


def test_threads_past_the_last_chain_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The simulator normally runs one thread per block (steady timings); here blocks of 4
    # over 10 chains leave 2 idle threads, which the kernel's bounds guard must skip.
    from ebmcore_samplers.kernels import cuda as cuda_src

    monkeypatch.setattr(cuda_src, "SIMULATOR_THREADS_PER_BLOCK", 4)
    x0 = torch.full((10, 2), 3.0, dtype=torch.float64)
    gpu = run("langevin", "cuda", x0)
    cpu = run("langevin", "numba", x0)
    assert torch.equal(gpu.samples, cpu.samples)
    assert torch.equal(gpu.trajectory, cpu.trajectory)


def test_cuda_mala_keeps_the_target() -> None:
    # Chains start from exact draws, so a kernel that does not leave the target invariant
    # drifts away within these 25 steps. The simulator runs every thread in Python, and its
    # cost per device-function call grows badly with long runs of many threads, so this test
    # stays at 200 chains x 25 steps; HMC is checked against the CPU kernel above.
    energy = gaussian2()
    mean, cov = truth(energy)
    sampler = fused("mala", step_size=0.6, adapt_step_size=False)
    x0 = energy.sample(200, generator=torch.Generator().manual_seed(5)).double()
    res = sampler.sample(energy, x0, 25, backend="cuda",
                         generator=torch.Generator().manual_seed(21))
    assert res.diagnostics["backend"] == "cuda"
    assert_within(moment_z(res.samples, mean, cov))
    assert 0.5 < float(res.diagnostics["acceptance"].mean()) <= 1.0
