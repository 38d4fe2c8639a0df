"""Bounded-memory sampling: a trajectory of a subset of chains, and one streamed to disk.

``Sampler.sample(..., trace_chains=N)`` records chains ``0, s, 2s, ...`` only; each backend
must allocate no more than that and give the same values as a full recording. The
``on_keep`` hook and :class:`ebmcore.sampler.TrajectoryFile` stream every chain's kept steps
into a ``.npy`` file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ebmcore
from ebmcore.errors import BackendUnavailableError
from ebmcore.runs import chain_diagnostics
from ebmcore.sampler import TrajectoryFile, trace_stride

BACKENDS = ["torch", "numba"]
SAMPLERS = {"langevin": {"step_size": 0.01}, "mala": {"step_size": 0.3, "adapt_mass": None,
                                                       "adapt_step_size": False}}


def _run(name: str, backend: str, **kw: object) -> ebmcore.SampleResult:
    energy = ebmcore.create("energy", "double_well")
    sampler = ebmcore.create("sampler", name, **SAMPLERS[name])
    x0 = torch.randn(103, 2, generator=torch.Generator().manual_seed(0))
    return sampler.sample(energy, x0, 20, burn_in=4, thin=2, backend=backend,
                          generator=torch.Generator().manual_seed(1), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_traced_subset_is_the_slice_of_the_full_trajectory(name: str, backend: str) -> None:
    full = _run(name, backend, return_trajectory=True)
    sub = _run(name, backend, return_trajectory=True, trace_chains=10)
    stride = sub.diagnostics["trajectory_stride"]
    assert stride == 11 and full.diagnostics["trajectory_stride"] == 1
    assert sub.diagnostics["backend"] == backend
    assert sub.trajectory.shape == (10, 10, 2)  # chains 0, 11, ..., 99
    assert torch.equal(sub.trajectory, full.trajectory[:, ::stride])
    assert torch.equal(sub.samples, full.samples)
    # the buffer behind the trajectory holds the subset only, on every backend
    assert sub.trajectory.untyped_storage().nbytes() == 10 * 10 * 2 * 4
    report = chain_diagnostics(sub.trajectory, total_chains=103, stride=stride)
    assert report["n_chains"] == report["traced_chains"] == 10 and report["n_draws"] == 10
    assert report["total_chains"] == 103 and report["chain_stride"] == 11
    assert report["rhat"]["max"] > 0.9 and report["ess_bulk"]["min"] > 0


def test_trace_stride_spreads_at_most_n_chains() -> None:
    assert trace_stride(1_000_000, 1000) == 1000
    assert trace_stride(1000, 300) == 4  # chains 0, 4, ..., 996: 250 of them
    assert trace_stride(50, 1000) == 1 and trace_stride(50, None) == 1


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError),
                                          (2.5, TypeError), (True, TypeError)])
def test_bad_trace_chains_are_refused(value: object, error: type) -> None:
    with pytest.raises(error, match="trace_chains"):
        _run("langevin", "torch", return_trajectory=True, trace_chains=value)


def test_trace_chains_needs_a_trajectory() -> None:
    with pytest.raises(ValueError, match="return_trajectory=True"):
        _run("langevin", "torch", trace_chains=5)


def test_non_finite_traced_chains_are_left_out_of_the_diagnostics() -> None:
    trajectory = torch.randn(50, 6, 2, generator=torch.Generator().manual_seed(0))
    trajectory[30:, 2] = float("nan")
    report = chain_diagnostics(trajectory)
    assert report["n_chains"] == 5 and report["n_nonfinite_chains"] == 1
    trajectory[:, :] = float("inf")
    report = chain_diagnostics(trajectory)
    assert report["rhat"] is None and "non-finite" in report["note"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_on_keep_runs_on_torch_only(backend: str) -> None:
    seen: list[int] = []
    if backend == "torch":
        result = _run("langevin", "auto", on_keep=lambda k, x: seen.append(k))
        assert result.diagnostics["backend"] == "torch" and seen == list(range(10))
    else:
        with pytest.raises(BackendUnavailableError, match="backend='numba' cannot call on_keep"):
            _run("langevin", backend, on_keep=lambda k, x: None)
    with pytest.raises(TypeError, match="on_keep"):
        _run("langevin", "torch", on_keep="file.npy")


def test_trajectory_file_streams_the_full_trajectory(tmp_path) -> None:
    path = tmp_path / "trajectory.npy"
    with TrajectoryFile(path, 10, (103, 2), torch.float32) as writer:
        streamed = _run("mala", "torch", return_trajectory=True, trace_chains=10,
                        on_keep=writer)
        assert writer.complete
    full = _run("mala", "torch", return_trajectory=True)
    on_disk = np.load(path, mmap_mode="r")
    assert on_disk.shape == (10, 103, 2) and on_disk.dtype == np.float32
    assert np.array_equal(on_disk, full.trajectory.numpy())
    assert torch.equal(streamed.trajectory, full.trajectory[:, ::11])
    with pytest.raises(ValueError, match="does not fit"):
        TrajectoryFile(tmp_path / "t.npy", 2, (3, 2), torch.float64)(2, torch.zeros(3, 2))


CUDASIM_CHECK = """
import torch, ebmcore
energy = ebmcore.create("energy", "double_well")
for name, params in [("langevin", {"step_size": 0.01}),
                     ("mala", {"step_size": 0.3, "adapt_mass": None, "adapt_step_size": False})]:
    sampler = ebmcore.create("sampler", name, **params)
    x0 = torch.randn(9, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(burn_in=2, thin=2, return_trajectory=True)
    full = sampler.sample(energy, x0, 6, generator=torch.Generator().manual_seed(1),
                          backend="numba", **kw)
    sub = sampler.sample(energy, x0, 6, generator=torch.Generator().manual_seed(1),
                         backend="cuda", trace_chains=3, **kw)
    assert sub.diagnostics["backend"] == "cuda" and sub.trajectory.shape == (3, 3, 2)
    assert torch.equal(sub.trajectory, full.trajectory[:, ::3]), name
print("ok")
"""


@pytest.mark.slow
def test_the_cuda_kernel_records_the_same_subset_under_the_simulator() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    out = subprocess.run([sys.executable, "-W", "ignore::RuntimeWarning", "-c", CUDASIM_CHECK],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
