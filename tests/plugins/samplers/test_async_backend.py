"""NUTS with asynchronous chains (``nuts(asynchronous=True)``, the ``async`` backend)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ebmcore_samplers import _nuts_async
from ebmcore_samplers.adaptation import DualAveraging, Welford
from ebmcore_samplers.async_backend import pool_chains
from ebmcore_samplers.nuts import NUTS

import ebmcore
from ebmcore import diagnostics
from ebmcore.errors import BackendUnavailableError
from ebmcore.testing import check_backend

#: Largest |z| allowed for a moment estimate against the truth (z = error / MCSE from ESS).
Z_MAX = 4.5
SCALES = torch.tensor([0.1, 1.0, 5.0, 2.0], dtype=torch.float64)
MEAN = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)


class DiagonalGaussian(ebmcore.Energy):
    """``N(MEAN, diag(SCALES²))``, scales 0.1 to 5: the mass adaptation has work to do."""

    event_shape = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("precision", SCALES ** -2)
        self.register_buffer("mean", MEAN.clone())
        self.rows = 0  # points evaluated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        d = x - self.mean.to(x.dtype)
        return 0.5 * (d * d * self.precision.to(x.dtype)).sum(1)


def _starts(seed: int, n: int = 32, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (3.0 * SCALES * torch.randn(n, 4, generator=gen, dtype=torch.float64)).to(dtype)


def _z_scores(draws: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> float:
    draws = draws.double()
    z_mean = (draws.mean((0, 1)) - mean) / diagnostics.mcse_mean(draws)
    centred = (draws - mean) ** 2
    z_var = (centred.mean((0, 1)) - var) / diagnostics.mcse_mean(centred)
    return float(torch.cat([z_mean, z_var]).abs().max())


@pytest.mark.parametrize("adapt_mass", ["diag", "dense"])
def test_asynchronous_nuts_matches_the_moments(adapt_mass: str) -> None:
    energy = DiagonalGaussian()
    result = NUTS(asynchronous=True, adapt_mass=adapt_mass).sample(
        energy, _starts(0), 300, burn_in=300, return_trajectory=True,
        generator=torch.Generator().manual_seed(1))
    d = result.diagnostics
    assert d["backend"] == "async" and "asynchronous" in d["backend_reason"]
    draws = diagnostics.from_trajectory(result.trajectory)
    assert _z_scores(draws, MEAN, SCALES ** 2) < Z_MAX
    assert float(diagnostics.rhat(draws.double()).max()) < 1.05
    # The pooled mass estimate found the scales (25 to 2,500 apart).
    inv = d["inverse_mass"]
    variances = inv if adapt_mass == "diag" else torch.diagonal(inv)
    assert torch.allclose(variances, SCALES ** 2, rtol=0.35)
    # Per-chain dual averaging tuned toward 0.8; the averaged step size it ends with is
    # smaller than its last iterates, so it accepts more (the lockstep sampler: 0.90 here).
    assert 0.75 < float(d["acceptance"].mean()) < 0.95
    assert d["step_size"].shape == (32,) and bool((d["step_size"] > 0).all())


def test_counts_are_the_gradients_evaluated_and_draws_are_reproducible() -> None:
    energy = DiagonalGaussian()
    runs = []
    for seed in (3, 3, 4):
        energy.rows = 0
        result = NUTS(asynchronous=True).sample(
            energy, _starts(2), 60, burn_in=60, generator=torch.Generator().manual_seed(seed))
        d = result.diagnostics
        # init evaluates all 32 chains once; every other row evaluated is a counted gradient
        # (the step-size searches' included).
        counted = int(d["n_grad_warmup"].sum() + d["n_grad_sampling"].sum())
        assert energy.rows == counted + 32
        assert d["tree_depth"].shape == (32,) and float(d["tree_depth"].min()) >= 1.0
        assert d["divergences"].dtype == torch.long
        runs.append(result.samples)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_trajectory_thinning_and_traced_chains() -> None:
    energy = DiagonalGaussian()
    result = NUTS(asynchronous=True).sample(
        energy, _starts(5, dtype=torch.float32), 40, burn_in=30, thin=4,
        return_trajectory=True, trace_chains=8, generator=torch.Generator().manual_seed(6))
    traj = result.trajectory
    assert traj.shape == (10, 8, 4) and traj.dtype == torch.float32
    # The last kept step is the last step: its column j is chain 4 j.
    torch.testing.assert_close(traj[-1], result.samples[::4])
    d = result.diagnostics
    assert d["energy_trace"].shape == (10,)
    assert torch.equal(d["energy_trace_steps"], torch.arange(4, 41, 4))
    # The trace is the mean energy over the chains at each kept step.
    torch.testing.assert_close(d["energy_trace"][-1], energy(result.samples).mean())


def test_row_dependent_energies_get_their_rows() -> None:
    """Each chain samples its own N(0, s_c I) through take_rows as chains leave the batch."""

    class PerRow(ebmcore.Energy):
        event_shape = (2,)

        def __init__(self, scale: torch.Tensor) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x ** 2).sum(1) / self.scale ** 2

        def take_rows(self, index: torch.Tensor) -> PerRow:
            return PerRow(self.scale[index])

    scale = torch.logspace(-1, 1, 16, dtype=torch.float64)
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    result = NUTS(asynchronous=True, adapt_mass=None).sample(
        PerRow(scale), x0 * scale[:, None], 400, burn_in=200, return_trajectory=True,
        generator=torch.Generator().manual_seed(8))
    ratio = (result.trajectory / scale[None, :, None]).transpose(0, 1)  # (chains, draws, 2)
    # Every chain's draws, scaled by its own s_c, are standard normal.
    var = ratio.square().mean((1, 2))
    assert float((var - 1.0).abs().max()) < 0.45
    draws = ratio.transpose(0, 1)
    assert _z_scores(draws, torch.zeros(2, dtype=torch.float64),
                     torch.ones(2, dtype=torch.float64)) < Z_MAX


def test_the_kernels_dual_averaging_is_the_samplers() -> None:
    accepts = [0.3, 0.95, float("nan"), 1.0, 0.0, 0.7, float("inf")]
    dual = DualAveraging(torch.tensor([0.4], dtype=torch.float64), 0.8)
    af = np.zeros((_nuts_async.NAF, 1))
    af[_nuts_async.MU, 0] = np.log(0.4) + np.log(10.0)
    af[_nuts_async.LOGSTEP, 0] = np.log(0.4)
    for alpha in accepts:
        want = float(dual.update(torch.tensor([alpha], dtype=torch.float64)))
        _nuts_async._dual_update(af, 0, alpha, 0.8, dual.gamma, dual.t0, dual.kappa)
        assert af[_nuts_async.BASE, 0] == pytest.approx(want, rel=1e-12)
    assert np.exp(af[_nuts_async.LOGBAR, 0]) == pytest.approx(float(dual.final()), rel=1e-12)


@pytest.mark.parametrize("dense", [False, True])
def test_pooled_chain_sums_are_one_accumulators(dense: bool) -> None:
    rng = np.random.default_rng(0)
    rows = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (5, 9, 1, 12)]
    n_c = np.array([len(r) for r in rows])
    means = np.stack([r.mean(0) for r in rows])
    m2 = np.stack([((r - r.mean(0)).T @ (r - r.mean(0))) if dense
                   else ((r - r.mean(0)) ** 2).sum(0)[None] for r in rows])
    pooled = pool_chains(n_c, means, m2, dense)
    want = Welford(3, dense=dense)
    want.update(torch.from_numpy(np.concatenate(rows)))
    torch.testing.assert_close(pooled.covariance(), want.covariance())
    # The kernel's per-chain accumulator gives the same sums.
    wn, wmean = np.zeros(4, np.int64), np.zeros((4, 3))
    wm2 = np.zeros((4, 3 if dense else 1, 3))
    for c, r in enumerate(rows):
        for x in r:
            _nuts_async._welford_add(wn, wmean, wm2, c, x, dense)
    np.testing.assert_allclose(wmean, means, rtol=1e-12)
    np.testing.assert_allclose(wm2, m2, rtol=1e-10)


def test_which_runs_go_asynchronous() -> None:
    energy = DiagonalGaussian()
    x0 = _starts(9, n=8)
    kept: list[int] = []
    # A run that must return to Python at each step runs in lockstep on torch.
    result = NUTS(asynchronous=True).sample(energy, x0, 5, on_keep=lambda k, x: kept.append(k))
    assert result.diagnostics["backend"] == "torch" and kept == list(range(5))
    # The default NUTS stays in lockstep; any NUTS can ask for the backend by name.
    assert NUTS().sample(energy, x0, 5).diagnostics["backend"] == "torch"
    assert NUTS().sample(energy, x0, 5, backend="async").diagnostics["backend"] == "async"
    with pytest.raises(BackendUnavailableError, match="nuts only"):
        ebmcore.create("sampler", "hmc", step_size=0.1).sample(energy, x0, 5, backend="async")
    with pytest.raises(TypeError, match="asynchronous"):
        NUTS(asynchronous="yes")  # type: ignore[arg-type]
    assert NUTS(asynchronous=True).state_dict()["asynchronous"] is True


def test_the_async_backend_keeps_the_backend_contract() -> None:
    check_backend("async", NUTS(), DiagonalGaussian(), _starts(10, n=9), trace_chains=4)


def test_a_stopped_run_returns_what_every_chain_completed() -> None:
    energy = DiagonalGaussian()
    calls = {"n": 0}

    def after_many_calls() -> bool:
        calls["n"] += 1
        return calls["n"] >= 5100  # of 5,313 for the whole run (seeded)

    result = NUTS(asynchronous=True).sample(
        energy, _starts(11, n=8), 200, burn_in=50, thin=2, return_trajectory=True,
        should_stop=after_many_calls, generator=torch.Generator().manual_seed(12))
    d = result.diagnostics
    assert d["backend"] == "async" and d["stopped_early"] == "should_stop"
    assert d["burn_in_done"] == 50 and 0 < d["n_steps_done"] < 200
    assert result.trajectory.shape[0] == d["n_steps_done"] // 2
    assert d["energy_trace"].shape == (d["n_steps_done"] // 2,)
    # Each chain finished the transition it was in: it completed done or done + 1.
    assert bool(torch.isfinite(result.samples).all())
    assert int(d["n_grad_sampling"].min()) >= d["n_steps_done"]
    # A time limit stops the run the same way (here during warm-up: nothing kept).
    early = NUTS(asynchronous=True).sample(energy, _starts(11, n=8), 200, burn_in=100,
                                           time_limit=1e-6)
    assert early.diagnostics["backend"] == "async"
    assert early.diagnostics["stopped_early"] == "time_limit"
    assert early.diagnostics["n_steps_done"] == 0 and "acceptance" not in early.diagnostics
