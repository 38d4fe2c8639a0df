"""Tests of ebmcore.diagnostics: ArviZ agreement, AR(1) closed forms, R-hat behaviour, errors."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from ebmcore import diagnostics as diag

# ----------------------------------------------------------------------------- helpers


def ar1(phi: float, chains: int, n: int, reps: int, seed: int,
        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Stationary AR(1) chains x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t, shaped (chains, n, reps)."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(chains, n, reps, generator=g, dtype=torch.float64)
    scale = math.sqrt(1.0 - phi * phi)
    e[:, 0] /= scale  # so x_0 = e_0 ~ N(0, 1), the stationary law: no burn-in needed
    x = lfilter([scale], [1.0, -phi], e.numpy(), axis=1)  # the recursion, in C
    return torch.from_numpy(x).to(dtype)


def messy_draws(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Autocorrelated draws with per-chain offsets and scales, so no diagnostic is trivial."""
    rng = np.random.default_rng(seed)
    chains, n = shape[:2]
    phi = rng.uniform(0.0, 0.9)
    e = rng.standard_normal(shape)
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    offsets = rng.normal(0.0, 0.5, size=(chains, 1) + shape[2:])
    scales = rng.uniform(0.5, 2.0, size=(chains, 1) + shape[2:])
    return x * scales + offsets


@pytest.fixture(scope="module")
def az():
    arviz = pytest.importorskip("arviz")
    logging.getLogger("arviz").setLevel(logging.ERROR)  # it logs shape warnings for 1 chain
    return arviz


def arviz_values(az, x: np.ndarray) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = az.convert_to_dataset(x)  # (chain, draw, *dims), like ebmcore.diagnostics
        return {
            "rhat": az.rhat(ds, method="rank")["x"].values,
            "ess_bulk": az.ess(ds, method="bulk")["x"].values,
            "ess_tail": az.ess(ds, method="tail")["x"].values,
            "ess_mean": az.ess(ds, method="mean")["x"].values,
            "mcse_mean": az.mcse(ds, method="mean")["x"].values,
            "autocorrelation": az.autocorr(x, axis=1),
        }


def assert_close(mine: torch.Tensor, ref: np.ndarray, rtol: float = 1e-6) -> None:
    assert mine.dtype == torch.float64
    assert tuple(mine.shape) == ref.shape
    np.testing.assert_allclose(mine.numpy(), ref, rtol=rtol, atol=1e-12)


# ----------------------------------------------------------------------------- ArviZ agreement

SHAPES = [(4, 200), (2, 101, 3), (3, 50, 2, 2), (8, 16), (2, 4)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_arviz(az, shape, seed):
    x = messy_draws(shape, seed)
    ref = arviz_values(az, x)
    t = torch.from_numpy(x)
    assert_close(diag.rhat(t), ref["rhat"])
    assert_close(diag.ess_bulk(t), ref["ess_bulk"])
    assert_close(diag.ess_tail(t), ref["ess_tail"])
    assert_close(diag.ess_mean(t), ref["ess_mean"])
    assert_close(diag.mcse_mean(t), ref["mcse_mean"])
    assert_close(diag.autocorrelation(t), ref["autocorrelation"])


def test_summary_matches_arviz_and_the_single_functions(az):
    x = messy_draws((4, 300, 2, 3), seed=7)
    t = torch.from_numpy(x)
    ref = arviz_values(az, x)
    out = diag.summary(t, max_lag=10)
    for key in ("rhat", "ess_bulk", "ess_tail", "ess_mean", "mcse_mean"):
        assert_close(out[key], ref[key])
    assert_close(out["autocorrelation"], ref["autocorrelation"][:, :11])
    assert_close(out["mean"], x.mean(axis=(0, 1)))
    assert_close(out["sd"], x.reshape(-1, 2, 3).std(axis=0, ddof=1))
    assert torch.equal(out["iat"], diag.integrated_autocorrelation_time(t))
    assert torch.equal(out["ess_tail"], diag.ess_tail(t))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_inputs(az, dtype):
    t = ar1(0.6, chains=4, n=257, reps=3, seed=3, dtype=dtype)
    # ArviZ gets the same values in float64: given float32 it folds |x - median| in float32,
    # whose rounding can reorder nearly equal values (seen: tail R-hat off by 2e-5), while
    # ebmcore computes in float64 whatever the input dtype.
    ref = arviz_values(az, t.double().numpy())
    assert_close(diag.rhat(t), ref["rhat"])
    assert_close(diag.ess_bulk(t), ref["ess_bulk"])
    assert_close(diag.ess_tail(t), ref["ess_tail"])
    assert_close(diag.mcse_mean(t), ref["mcse_mean"])
    # A float32 input is cast exactly, so it gives the float64 answer for the same values.
    assert torch.equal(diag.ess_bulk(t), diag.ess_bulk(t.double()))


def test_tail_probability_matches_arviz(az):
    x = messy_draws((4, 400), seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.ess(az.convert_to_dataset(x), method="tail", prob=0.1)["x"].values
    assert_close(diag.ess_tail(torch.from_numpy(x), prob=0.1), ref)


def test_tied_draws_match_arviz(az):
    # Rounding creates many ties: ranks must be averaged as scipy.stats.rankdata does.
    x = np.round(messy_draws((4, 500, 2), seed=5), 1)
    ref = arviz_values(az, x)
    t = torch.from_numpy(x)
    assert_close(diag.rhat(t), ref["rhat"])
    assert_close(diag.ess_bulk(t), ref["ess_bulk"])
    assert_close(diag.ess_mean(t), ref["ess_mean"])


def test_integer_draws_are_accepted(az):
    x = np.round(messy_draws((3, 120), seed=2) * 3).astype(np.int64)
    ref = arviz_values(az, x)
    assert_close(diag.rhat(torch.from_numpy(x)), ref["rhat"])
    assert_close(diag.ess_bulk(torch.from_numpy(x)), ref["ess_bulk"])


def test_constant_dimension_follows_arviz(az):
    x = messy_draws((4, 60, 2), seed=4)
    x[..., 0] = 2.5
    ref = arviz_values(az, x)
    t = torch.from_numpy(x)
    rhat = diag.rhat(t)
    assert math.isnan(rhat[0]) and np.isnan(ref["rhat"][0])
    assert_close(rhat[1:], ref["rhat"][1:])
    for name in ("ess_bulk", "ess_tail", "ess_mean"):
        value = getattr(diag, name)(t)
        assert value[0] == 4 * 60  # every draw counts when there is nothing to mix
        assert_close(value, ref[name])
    assert diag.mcse_mean(t)[0] == 0


def test_single_chain_rhat_splits_the_chain(az):
    # ArviZ returns NaN for one chain; ebmcore splits it in two, so compare with ArviZ's own
    # building blocks applied to the two halves.
    d = pytest.importorskip("arviz.stats.diagnostics")
    if not all(hasattr(d, f) for f in ("_rhat", "_z_scale", "_split_chains")):
        pytest.skip("this ArviZ version lacks the private R-hat helpers used as the reference")
    for n in (64, 65):  # odd lengths drop the middle draw
        x = messy_draws((1, n), seed=n)
        split = d._split_chains(x)
        bulk = d._rhat(d._z_scale(split))
        tail = d._rhat(d._z_scale(np.abs(split - np.median(split))))
        assert_close(diag.rhat(torch.from_numpy(x)), np.asarray(max(bulk, tail)))


# ----------------------------------------------------------------------------- AR(1) closed forms


@pytest.mark.parametrize("phi", [-0.5, 0.5, 0.9])
def test_ar1_autocorrelation_is_phi_to_the_k(phi):
    chains, n = 8, 20_000
    x = ar1(phi, chains=chains, n=n, reps=1, seed=21)[..., 0]
    rho = diag.autocorrelation(x, max_lag=5)
    assert rho.shape == (chains, 6)
    assert torch.all(rho[:, 0] == 1)
    tau = (1 + phi) / (1 - phi)
    for k in range(1, 6):
        # Bartlett's variance of one chain's lag-k autocorrelation for an AR(1) process.
        var = ((1 + phi**2) * (1 - phi ** (2 * k)) / (1 - phi**2) - 2 * k * phi ** (2 * k)) / n
        se = math.sqrt(var / chains)
        # First-order bias of the mean-centred, divide-by-n estimator: -(k rho_k + tau (1 - rho_k))
        # / n, bounded by (k + 2 tau) / n; with these sizes it is below one standard error.
        bias_bound = (k + 2 * tau) / n
        estimate = rho[:, k].mean().item()
        assert abs(estimate - phi**k) < 5 * se + bias_bound, (k, estimate, phi**k, se)


@pytest.mark.parametrize("phi", [-0.5, 0.0, 0.5, 0.9])
def test_ar1_integrated_autocorrelation_time(phi):
    reps, chains, n = 50, 4, 10_000
    x = ar1(phi, chains=chains, n=n, reps=reps, seed=17)  # 50 independent replicates as dims
    tau_true = (1 + phi) / (1 - phi)
    tau = diag.integrated_autocorrelation_time(x)
    assert tau.shape == (reps,)
    sd_one = tau.std().item()  # the standard error of a single estimate
    # The replicate mean has standard error sd_one / sqrt(reps). Geyer's truncation also biases
    # each estimate (it is a consistent overestimate, Geyer 1992): measured at about half of
    # sd_one for white noise, so allow one sd_one for it.
    tolerance = 5 * sd_one / math.sqrt(reps) + sd_one
    assert abs(tau.mean().item() - tau_true) < tolerance, (tau.mean().item(), tau_true, sd_one)
    # The estimate is informative: its spread is a small fraction of the value.
    assert sd_one < 0.15 * tau_true
    # tau and the ESS for the mean describe the same thing.
    torch.testing.assert_close(tau, chains * n / diag.ess_mean(x), rtol=1e-12, atol=0)


def test_ar1_mcse_mean_matches_closed_form():
    reps, chains, n, phi = 50, 4, 10_000, 0.5
    x = ar1(phi, chains=chains, n=n, reps=reps, seed=5)
    tau = (1 + phi) / (1 - phi)
    true_mcse = math.sqrt(tau / (chains * n))  # unit marginal variance
    mcse = diag.mcse_mean(x)
    sd_one = mcse.std().item()
    tolerance = 5 * sd_one / math.sqrt(reps) + sd_one  # as for tau above
    assert abs(mcse.mean().item() - true_mcse) < tolerance
    # The replicate means really scatter by the MCSE: sample sd within 5 of its standard errors.
    spread = x.mean(dim=(0, 1)).std().item()
    assert abs(spread - true_mcse) < 5 * true_mcse / math.sqrt(2 * (reps - 1))


# ----------------------------------------------------------------------------- R-hat behaviour


def iid(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def test_rhat_near_one_for_well_mixed_chains():
    # For iid draws B/W ~ F(7, 3992) over 8 split chains of 500, and R-hat > 1.01 would need
    # B/W > 1 + 500 (1.01^2 - 1) = 11; P(F > 11) < 1e-12 per dimension.
    r = diag.rhat(iid((4, 1000, 50), seed=0))
    assert r.shape == (50,)
    assert torch.all(r < 1.01)
    assert torch.all(r > 0.99)


def test_rhat_flags_chains_with_different_means():
    x = iid((4, 1000, 20), seed=1)
    x[3] += 2.0  # one chain stuck two standard deviations away
    assert torch.all(diag.rhat(x) > 1.1)


def test_rhat_tail_part_flags_chains_with_different_scales():
    x = iid((4, 1000, 20), seed=2)
    x[3] *= 4.0  # same centre, so only the folded (tail) R-hat sees it
    assert torch.all(diag.rhat(x) > 1.1)


def test_rhat_single_chain_detects_drift():
    x = iid((1, 1000, 5), seed=3)
    x[0, 500:] += 2.0  # the second half has moved
    assert torch.all(diag.rhat(x) > 1.1)
    assert torch.all(diag.rhat(iid((1, 1000, 5), seed=4)) < 1.02)


# ----------------------------------------------------------------------------- layout, shapes


def test_shapes_follow_the_dims():
    x = iid((3, 40, 2, 5), seed=5)
    for fn in (diag.rhat, diag.ess_bulk, diag.ess_tail, diag.ess_mean, diag.mcse_mean,
               diag.integrated_autocorrelation_time):
        assert fn(x).shape == (2, 5)
        assert fn(x[..., 0, 0]).shape == ()
    assert diag.autocorrelation(x).shape == (3, 40, 2, 5)
    assert diag.autocorrelation(x, max_lag=0).shape == (3, 1, 2, 5)
    out = diag.summary(x[..., 0, 0], max_lag=3)
    assert set(out) == {"mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "ess_mean", "rhat",
                        "iat", "autocorrelation"}
    assert out["autocorrelation"].shape == (3, 4)
    assert all(v.dtype == torch.float64 for v in out.values())


def test_dims_are_diagnosed_independently():
    x = iid((4, 100, 3), seed=6)
    x[..., 1] = torch.cumsum(x[..., 1], dim=1)  # a random walk next to white noise
    whole = diag.summary(x)
    for j in range(3):
        single = diag.summary(x[..., j])
        for key, value in single.items():
            torch.testing.assert_close(whole[key][..., j], value, rtol=1e-12, atol=1e-12)
    assert whole["ess_bulk"][1] < whole["ess_bulk"][0] / 10


def test_from_trajectory_converts_steps_first_layout():
    traj = iid((60, 4, 2), seed=7)  # (T, B, *event) as Sampler.sample records it
    draws = diag.from_trajectory(traj)
    assert draws.shape == (4, 60, 2)
    assert torch.equal(draws[1, :, 0], traj[:, 1, 0])
    assert torch.equal(diag.rhat(draws), diag.rhat(traj.transpose(0, 1).contiguous()))


def test_input_is_left_untouched_and_may_require_grad():
    x = iid((2, 30), seed=8).requires_grad_()
    before = x.detach().clone()
    diag.summary(x)
    assert torch.equal(x.detach(), before)


def test_fast_fft_length_is_the_smallest_5_smooth_size():
    def smooth(m: int) -> bool:
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 400):
        m = diag._fast_fft_len(n)
        assert m >= n and smooth(m)
        assert not any(smooth(k) for k in range(n, m))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = iid((4, 300, 3), seed=9)
    cpu, gpu = diag.summary(x), diag.summary(x.cuda())
    for key in cpu:
        assert gpu[key].device.type == "cuda"
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [diag.rhat, diag.ess_bulk, diag.ess_tail, diag.ess_mean,
                                diag.mcse_mean, diag.autocorrelation,
                                diag.integrated_autocorrelation_time, diag.summary])
def test_bad_draws_raise_naming_the_argument(fn):
    with pytest.raises(TypeError, match="draws must be a torch.Tensor"):
        fn(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"draws must have shape \(chains, draws, \*dims\)"):
        fn(torch.zeros(10))
    with pytest.raises(ValueError, match="at least 4 draws per chain"):
        fn(torch.randn(4, 3))
    with pytest.raises(ValueError, match="at least 1 chain"):
        fn(torch.zeros(0, 10))
    with pytest.raises(ValueError, match="no values"):
        fn(torch.zeros(2, 10, 0))
    with pytest.raises(TypeError, match="real-valued"):
        fn(torch.zeros(2, 10, dtype=torch.complex64))
    bad = torch.randn(2, 10, 3)
    bad[1, 4, 2] = float("nan")
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="draws contains 2 non-finite values"):
        fn(bad)


def test_bad_options_raise():
    x = torch.randn(2, 10)
    with pytest.raises(ValueError, match="max_lag must be at most n_draws - 1 = 9"):
        diag.autocorrelation(x, max_lag=10)
    with pytest.raises(ValueError, match="max_lag must be at least 0"):
        diag.summary(x, max_lag=-1)
    with pytest.raises(TypeError, match="max_lag must be an integer"):
        diag.autocorrelation(x, max_lag=2.0)
    for prob in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="prob must lie strictly between 0 and 1"):
            diag.ess_tail(x, prob=prob)
    with pytest.raises(TypeError, match="prob must be a number"):
        diag.ess_tail(x, prob="0.05")


def test_from_trajectory_errors():
    with pytest.raises(TypeError, match="return_trajectory=True"):
        diag.from_trajectory(None)
    with pytest.raises(TypeError, match="trajectory must be a torch.Tensor"):
        diag.from_trajectory([[1.0]])
    with pytest.raises(ValueError, match=r"trajectory must have shape \(T, B, \*event_shape\)"):
        diag.from_trajectory(torch.zeros(5))
