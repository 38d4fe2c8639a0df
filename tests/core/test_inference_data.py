"""Export of sampling runs to ArviZ's InferenceData (ebmcore.inference_data)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import ebmcore
from ebmcore.inference_data import InfoRecorder, import_arviz, to_inference_data
from ebmcore.sampler import Sampler, SamplerState

az = pytest.importorskip("arviz")


class Counter(Sampler):
    """Moves every chain by +1 per step and reports the step number as its info, so that
    the kept draws and the kept info can be matched exactly."""

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def init(self, energy, x):
        self.n = 0
        return SamplerState(x=x.clone(), energy=energy(x))

    def step(self, energy, state, generator=None):
        self.n += 1
        state.x += 1
        b = state.x.shape[0]
        chain = torch.arange(b, dtype=state.x.dtype)
        return state, {"accept_prob": torch.full((b,), float(self.n)) + chain / 100,
                       "divergent": (chain + self.n) % 3 == 0,
                       "n_grad": torch.full((b,), self.n, dtype=torch.long)}

    def final_diagnostics(self, state):
        return {"step_size": torch.linspace(0.1, 0.2, state.x.shape[0])}


def _gaussian():
    return ebmcore.create("energy", "gaussian", mean=[1.0, -1.0, 0.5], diag=[1.0, 4.0, 0.25])


def test_posterior_group_holds_named_draws_chain_first() -> None:
    energy = _gaussian()
    x0 = torch.zeros(4, 3)
    result = ebmcore.create("sampler", "mala").sample(
        energy, x0, 40, burn_in=20, generator=torch.Generator().manual_seed(0),
        return_trajectory=True)

    def constrain(traj):
        return {"a": traj[..., 0], "b": traj[..., 1:]}

    idata = to_inference_data(result, constrain, coords={"coord": ["y", "z"]},
                              dims={"b": ["coord"]})
    post = idata.posterior
    assert post["a"].dims == ("chain", "draw") and post["a"].shape == (4, 40)
    assert post["b"].dims == ("chain", "draw", "coord") and post["b"].shape == (4, 40, 2)
    np.testing.assert_allclose(post["b"].values,
                               result.trajectory[..., 1:].movedim(0, 1).double().numpy())
    raw = to_inference_data(result)
    assert raw.posterior["x"].shape == (4, 40, 3)
    assert raw.posterior.attrs["ebmcore_backend"] == result.diagnostics["backend"]
    assert raw.sample_stats.attrs["ebmcore_n_steps"] == 40


def test_summary_ess_and_rhat_match_ebmcore_diagnostics() -> None:
    energy = _gaussian()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    result = ebmcore.create("sampler", "mala").sample(energy, x0, 200, burn_in=100,
                                                      generator=gen, return_trajectory=True)
    idata = to_inference_data(result)
    summary = az.summary(idata, kind="diagnostics")
    draws = ebmcore.diagnostics.from_trajectory(result.trajectory)
    np.testing.assert_allclose(summary["ess_bulk"].values,
                               ebmcore.diagnostics.ess_bulk(draws).numpy().round(), atol=1.0)
    ess = az.ess(idata, method="bulk")["x"].values
    np.testing.assert_allclose(ess, ebmcore.diagnostics.ess_bulk(draws).numpy(), rtol=1e-10)
    rhat = az.rhat(idata)["x"].values
    np.testing.assert_allclose(rhat, ebmcore.diagnostics.rhat(draws).numpy(), rtol=1e-10)


def test_recorded_info_lines_up_with_the_kept_draws() -> None:
    """With burn-in and thinning, the info of kept draw k is that of the step that made it."""
    recorder = InfoRecorder(Counter())
    energy = _gaussian()
    result = recorder.sample(energy, torch.zeros(5, 3, dtype=torch.float64), 12, burn_in=7,
                             thin=3, return_trajectory=True, trace_chains=3)
    info = recorder.kept_info(result)
    assert info["accept_prob"].shape == (4, 5)
    steps = result.trajectory[:, :, 0]  # step number of each kept draw, (T, traced chains)
    assert steps[:, 0].tolist() == [10.0, 13.0, 16.0, 19.0]
    idata = to_inference_data(result, info=info)
    stats = idata.sample_stats
    stride = result.diagnostics["trajectory_stride"]
    assert stride == 2
    traced = torch.arange(0, 5, stride, dtype=torch.float64)
    expected = steps.T + traced[:, None] / 100
    np.testing.assert_allclose(stats["acceptance_rate"].values, expected.numpy())
    assert stats["diverging"].dtype == bool
    np.testing.assert_array_equal(stats["diverging"].values,
                                  ((traced[:, None] + steps.T) % 3 == 0).numpy())
    np.testing.assert_array_equal(stats["n_steps"].values, steps.T.long().numpy())
    # the run's per-chain diagnostics, for the traced chains
    np.testing.assert_allclose(stats["step_size"].values,
                               np.repeat(np.linspace(0.1, 0.2, 5)[::2, None], 4, axis=1))
    assert stats["n_diverging"].dims == ("chain",)
    np.testing.assert_array_equal(stats["n_diverging"].values,
                                  result.diagnostics["divergences"][::stride].numpy())


def test_nuts_statistics_agree_with_the_run_diagnostics() -> None:
    recorder = InfoRecorder(ebmcore.create("sampler", "nuts"))
    gen = torch.Generator().manual_seed(2)
    result = recorder.sample(_gaussian(), torch.zeros(3, 3, dtype=torch.float64), 30,
                             burn_in=30, generator=gen, return_trajectory=True)
    stats = to_inference_data(result, info=recorder.kept_info(result)).sample_stats
    for name in ("acceptance_rate", "diverging", "n_steps", "tree_depth", "step_size"):
        assert stats[name].dims == ("chain", "draw"), name
    d = result.diagnostics
    np.testing.assert_allclose(stats["acceptance_rate"].mean("draw").values,
                               d["acceptance"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(stats["n_steps"].sum("draw").values,
                                  d["n_grad_sampling"].numpy())
    np.testing.assert_array_equal(stats["diverging"].sum("draw").values,
                                  d["divergences"].numpy())
    np.testing.assert_allclose(stats["mean_tree_depth"].values, d["tree_depth"].numpy())


def test_export_survives_a_netcdf_round_trip(tmp_path) -> None:
    result = ebmcore.create("sampler", "mala").sample(_gaussian(), torch.zeros(2, 3), 10,
                                                      return_trajectory=True)
    idata = to_inference_data(result)
    idata.to_netcdf(tmp_path / "run.nc")
    back = az.from_netcdf(tmp_path / "run.nc")
    np.testing.assert_allclose(back.posterior["x"].values, idata.posterior["x"].values)
    np.testing.assert_allclose(back.sample_stats["mean_acceptance_rate"].values,
                               result.diagnostics["acceptance"].numpy())


def test_bad_input_is_refused_with_a_reason() -> None:
    energy = _gaussian()
    result = ebmcore.create("sampler", "mala").sample(energy, torch.zeros(2, 3), 8)
    with pytest.raises(ValueError, match="return_trajectory=True"):
        to_inference_data(result)
    result = ebmcore.create("sampler", "mala").sample(energy, torch.zeros(2, 3), 8,
                                                      return_trajectory=True)
    with pytest.raises(ValueError, match=r"expected \(8, 2, ...\)"):
        to_inference_data(result, lambda t: {"a": t[0]})
    with pytest.raises(ValueError, match=r"info\['accept_prob'\] must have shape \(T, B\)"):
        to_inference_data(result, info={"accept_prob": torch.zeros(3, 2)})
    with pytest.raises(TypeError, match="SampleResult"):
        to_inference_data(result.trajectory)
    with pytest.raises(TypeError, match="ebmcore.Sampler"):
        InfoRecorder("mala")


def test_missing_arviz_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "arviz", None)  # what an uninstalled package looks like
    with pytest.raises(ImportError, match=r"pip install ebmcore\[arviz\]"):
        import_arviz()
