"""The numba CPU kernels: exactness, agreement with the torch samplers, bits, diagnostics.

Every test samples the registry's correlated 2-D Gaussian (float64) so that the session
compiles one kernel per method; each statistical check compares the final states of
independent chains, whose spread gives the Monte Carlo standard error.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numba
import pytest
import torch
from ebmcore_samplers.adaptation import DualAveraging
from ebmcore_samplers.kernels import bodies, dispatch, factory
from ebmcore_samplers.schedules import Exponential
from kernel_helpers import assert_within, fused, gaussian2, moment_z, truth, two_sample_z

N = 3000


def start(n: int = N, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Chains started far from the target (at (4, 4)), so a do-nothing kernel fails."""
    return torch.full((n, 2), 4.0, dtype=dtype)


SETTINGS = {
    "mala": dict(step_size=0.5, adapt_step_size=True),
    "hmc": dict(step_size=0.4, n_leapfrog=5, adapt_step_size=True),
    "langevin": dict(step_size=0.05),
}


@pytest.mark.parametrize("method", ["mala", "hmc"])
def test_exact_samplers_hit_the_target_moments(method: str) -> None:
    energy = gaussian2()
    mean, cov = truth(energy)
    sampler = fused(method, **SETTINGS[method])
    res = sampler.sample(energy, start(), 60, burn_in=150, backend="numba",
                         generator=torch.Generator().manual_seed(1))
    assert res.diagnostics["backend"] == "numba"
    assert_within(moment_z(res.samples, mean, cov))
    acc = res.diagnostics["acceptance"]
    assert acc.shape == (N,) and 0.3 < float(acc.mean()) < 1.0
    assert res.diagnostics["nonfinite_chains"].numel() == 0
    # Adapted per-chain step sizes are reported and differ between chains.
    step = res.diagnostics["step_size"]
    assert step.shape == (N,) and float(step.std()) > 0


def test_langevin_has_exactly_its_known_step_size_bias() -> None:
    energy = gaussian2()
    mean, cov = truth(energy)
    eps = 0.4
    prec = torch.linalg.inv(cov)
    # ULA on N(m, S): x' = x - eps P (x - m) + sqrt(2 eps) xi has stationary covariance
    # (P - eps/2 P^2)^-1, i.e. s^2 / (1 - eps / (2 s^2)) in one dimension.
    biased = torch.linalg.inv(prec - 0.5 * eps * prec @ prec)
    res = fused("langevin", step_size=eps).sample(
        energy, start(), 400, backend="numba", generator=torch.Generator().manual_seed(2))
    assert_within(moment_z(res.samples, mean, biased))
    # The same check against the unbiased covariance fails: the test can see the bias.
    z = moment_z(res.samples, mean, cov)
    assert abs(z["cov00"]) > 4.5


@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_fused_and_torch_backends_agree_in_distribution(method: str) -> None:
    energy = gaussian2()
    sampler = fused(method, **SETTINGS[method])
    n = 2000
    kw = dict(burn_in=100, generator=None)
    a = sampler.sample(energy, start(n), 150, backend="numba",
                       **{**kw, "generator": torch.Generator().manual_seed(3)})
    b = sampler.sample(energy, start(n), 150, backend="torch",
                       **{**kw, "generator": torch.Generator().manual_seed(4)})
    assert_within(two_sample_z(a.samples, b.samples))
    if method != "langevin":
        acc_a, acc_b = a.diagnostics["acceptance"], b.diagnostics["acceptance"]
        se = (acc_a.var() / n + acc_b.var() / n).sqrt()
        assert abs(float((acc_a.mean() - acc_b.mean()) / se)) < 4.5


@pytest.mark.parametrize("method", ["langevin", "mala", "hmc"])
def test_same_seed_same_bits_whatever_the_thread_count(method: str) -> None:
    energy = gaussian2()
    sampler = fused(method, **SETTINGS[method])

    def run(seed: int, threads: int):
        numba.set_num_threads(threads)
        try:
            return sampler.sample(energy, start(200), 30, burn_in=10, thin=3,
                                  return_trajectory=True, backend="numba",
                                  generator=torch.Generator().manual_seed(seed))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    a, b = run(7, 1), run(7, numba.config.NUMBA_NUM_THREADS)
    assert torch.equal(a.samples, b.samples)
    assert torch.equal(a.trajectory, b.trajectory)
    if method != "langevin":
        assert torch.equal(a.diagnostics["acceptance"], b.diagnostics["acceptance"])
    c = run(8, 1)
    assert not torch.equal(a.samples, c.samples)


_THREADS_SCRIPT = """
import numba  # imported first, as the benchmarks do
import torch
import ebmcore
torch.set_num_threads(1)
assert torch.get_num_threads() == 1  # as the benchmarks do; this order showed the bug
sampler = ebmcore.create("sampler", "langevin", step_size=0.05)
energy = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0])
sampler.sample(energy, torch.zeros(200, 2), 5, backend="numba")
print(torch.get_num_threads())
"""


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_the_numba_backend_leaves_torchs_thread_count_alone() -> None:
    # numba's OpenMP layer sets the shared OpenMP thread count when its first parallel
    # kernel starts the thread pool, which left torch on numba's count. A fresh process,
    # so that this run is the one that starts the pool.
    out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True,
                         text=True, check=True, timeout=300)
    assert out.stdout.split() == ["1"], out.stdout + out.stderr


def test_noiseless_langevin_follows_torch_exactly_with_clip_clamp_and_schedule() -> None:
    # Without noise both backends run the same deterministic recursion, so they agree to
    # rounding: this pins the semantics of grad_clip, clamp and step-size schedules.
    energy = gaussian2()
    sampler = fused("langevin", step_size=Exponential(0.3, 0.01, steps=40), noise_scale=0.0,
                    grad_clip=0.5, clamp=(-0.5, None))
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(5),
                     dtype=torch.float64).abs() * 3
    kw = dict(burn_in=0, return_trajectory=True)
    a = sampler.sample(energy, x0, 50, backend="numba",
                       generator=torch.Generator().manual_seed(0), **kw)
    b = sampler.sample(energy, x0, 50, backend="torch",
                       generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(a.trajectory, b.trajectory, rtol=1e-12, atol=1e-12)
    assert float(a.samples.min()) == -0.5  # the clamp is active (the target mean is -1)
    # The clip acts: every first move is at most step_size(0) * grad_clip long.
    first = (a.trajectory[0] - x0).norm(dim=1)
    assert float(first.max()) <= 0.3 * 0.5 + 1e-12 and float(first.max()) > 0.3 * 0.5 - 1e-6


def test_trajectory_thinning_and_energy_trace() -> None:
    energy = gaussian2()
    sampler = fused("mala", step_size=0.5, adapt_step_size=False)
    res = sampler.sample(energy, start(300), 40, burn_in=5, thin=4, return_trajectory=True,
                         backend="numba", generator=torch.Generator().manual_seed(9))
    traj = res.trajectory
    assert traj.shape == (10, 300, 2)
    assert torch.equal(traj[-1], res.samples)
    d = res.diagnostics
    steps = d["energy_trace_steps"]
    assert steps.tolist() == [4 * (k + 1) for k in range(10)]
    expected = torch.stack([energy(traj[k]).mean() for k in range(10)])
    torch.testing.assert_close(d["energy_trace"], expected, rtol=1e-10, atol=1e-10)
    # The state continues sampling on the torch backend from where the kernel stopped.
    assert torch.equal(res.state.x, res.samples)
    state, info = sampler.step(energy, res.state, torch.Generator().manual_seed(1))
    assert info["accept_prob"].shape == (300,)


def test_float32_chains_stay_float32_and_exact() -> None:
    energy = gaussian2(torch.float32)
    mean, cov = truth(energy)
    res = fused("mala", step_size=0.5).sample(
        energy, start(N, torch.float32), 60, burn_in=150, backend="numba",
        generator=torch.Generator().manual_seed(11))
    assert res.samples.dtype == torch.float32
    assert res.diagnostics["acceptance"].dtype == torch.float32
    assert_within(moment_z(res.samples, mean, cov))


def test_hmc_with_diagonal_mass_and_jitter_is_exact() -> None:
    energy = gaussian2()
    mean, cov = truth(energy)
    sampler = fused("hmc", step_size=0.3, n_leapfrog=4, mass=[1.0, 0.25], jitter=0.3,
                    adapt_step_size=False)
    res = sampler.sample(energy, start(), 80, burn_in=40, backend="numba",
                         generator=torch.Generator().manual_seed(12))
    assert_within(moment_z(res.samples, mean, cov))
    assert res.diagnostics["divergences"].shape == (N,)
    torch.testing.assert_close(res.diagnostics["inverse_mass"].double(),
                               torch.tensor([1.0, 4.0], dtype=torch.float64))


def test_blown_up_chains_are_reported_not_replaced() -> None:
    # eps above 2 / lambda_max makes ULA on a Gaussian diverge geometrically.
    energy = gaussian2()
    res = fused("langevin", step_size=3.0).sample(
        energy, start(50), 2000, backend="numba", generator=torch.Generator().manual_seed(0))
    assert res.diagnostics["nonfinite_chains"].tolist() == list(range(50))
    assert not bool(torch.isfinite(res.samples).any())
    assert res.state is None


def test_hmc_counts_divergences() -> None:
    energy = gaussian2()
    res = fused("hmc", step_size=2.5, n_leapfrog=20, adapt_step_size=False).sample(
        energy, start(100), 20, backend="numba", generator=torch.Generator().manual_seed(0))
    div = res.diagnostics["divergences"]
    assert int(div.sum()) > 0 and int(div.max()) <= 20
    assert float(res.diagnostics["acceptance"].max()) < 0.5


def test_dual_averaging_helper_matches_the_torch_class() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(50, generator=gen, dtype=torch.float64)
    da = DualAveraging(0.3, 0.7, n_chains=1, dtype=torch.float64)
    gamma, t0, kappa = dispatch._da_defaults()
    opts = [1.0, 0.7, gamma, t0, kappa]
    mu = math.log(0.3) + math.log(10.0)  # as the kernel and DualAveraging compute it
    h_bar = log_step_bar = 0.0
    for t, a in enumerate(probs.tolist(), start=1):
        expected = float(da.update(torch.tensor([a], dtype=torch.float64))[0])
        h_bar, log_step, log_step_bar = bodies.dual_average(h_bar, log_step_bar, t, mu, a, opts)
        assert abs(math.exp(log_step) - expected) < 1e-12
    assert abs(math.exp(log_step_bar) - float(da.final()[0])) < 1e-12


def test_kernels_are_memoised_and_not_recompiled() -> None:
    face = gaussian2().numba_face()
    k1 = factory.cpu_kernel("mala", face.grad, face.energy, 2, "float64")
    size = factory.cache_size()
    k2 = factory.cpu_kernel("mala", face.grad, face.energy, 2, "float64")
    assert k1 is k2 and factory.cache_size() == size
    k3 = factory.cpu_kernel("mala", face.grad, face.energy, 3, "float64")
    assert k3 is not k1  # another D is another kernel (built lazily, compiled on first call)


def test_importing_the_kernels_compiles_nothing_and_skips_numba_cuda() -> None:
    code = ("import sys, ebmcore_samplers.kernels as k; from ebmcore_samplers.kernels import "
            "factory; assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'; "
            "assert factory.cache_size() == 0; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_run_fused_directly_returns_the_documented_tuple() -> None:
    energy = gaussian2()
    face = energy.numba_face()
    samples, traj, acc, extra = dispatch.run_fused(
        "langevin", "numba", face, start(20), n_steps=10, burn_in=0, thin=1,
        params={"step_size": 0.1}, generator=torch.Generator().manual_seed(0),
        return_trajectory=False)
    assert samples.shape == (20, 2) and traj is None and acc is None
    torch.testing.assert_close(extra["energy"], energy(samples), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="unknown langevin kernel parameters"):
        dispatch.run_fused("langevin", "numba", face, start(2), n_steps=1, burn_in=0, thin=1,
                           params={"step_size": 0.1, "n_leapfrog": 3},
                           generator=torch.Generator(), return_trajectory=False)
    with pytest.raises(ValueError, match="step_size must stay positive"):
        dispatch.run_fused("langevin", "numba", face, start(2), n_steps=3, burn_in=0, thin=1,
                           params={"step_size": lambda t: 0.1 - 0.05 * t},
                           generator=torch.Generator(), return_trajectory=False)


def test_kernel_constants_match_the_torch_samplers() -> None:
    from ebmcore_samplers import hmc

    assert dispatch.DIVERGENCE_THRESHOLD == hmc.DIVERGENCE_THRESHOLD
