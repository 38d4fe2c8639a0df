"""benchmarks/posteriors.py: its quick mode runs, its statistics can fail, and its targets'
log densities are the Inference Gym's (where tfp-nightly is installed) and BlackJAX's mirror's."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from benchmark_modules import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("posteriors")


@pytest.fixture(scope="module")
def targets():
    return load_benchmark("posterior_targets")


def buildable(targets, name: str):
    """The target, or a skip when it needs the gym's files and they are not installed."""
    try:
        return targets.make_target(name, torch.float64)
    except targets.GymUnavailableError as exc:
        pytest.skip(str(exc))


def test_quick_mode_runs_and_matches_the_reference(bench, tmp_path) -> None:
    out = io.StringIO()
    settings = bench.Settings(chains=4, warmup=100, draws=100, seed=0)
    rows, failed = bench.run(["banana", "eight_schools_nc"], ["nuts"], settings, out=out)
    assert failed == []
    assert rows, out.getvalue()
    for row in rows:
        assert row.error is None, row.error
        assert row.chains == 4 and row.seconds > 0
        assert math.isfinite(row.max_rhat) and row.min_ess > 0
        assert 0.0 < row.acceptance <= 1.0
        # Seeded: the means lie within 5 standard errors of the reference.
        assert row.max_z < bench.Z_LIMIT, (row.target, row.max_z)
        if math.isfinite(row.grads_sampling):  # reported once the samplers count gradients
            assert row.grads_sampling >= 4 * 100 and row.ess_per_kgrad > 0
    text = bench.markdown(rows, settings)
    assert "| Banana, 2-D | nuts |" in text
    assert "nuts" in out.getvalue()


def test_main_quick_writes_markdown_and_json(bench, tmp_path, capsys) -> None:
    md, rows = tmp_path / "table.md", tmp_path / "rows.json"
    assert bench.main(["--quick", "--targets", "banana", "--samplers", "mala",
                       "--markdown", str(md), "--json", str(rows)]) == 0
    table = md.read_text()
    assert "| Banana, 2-D | mala |" in table
    assert "s in all" in capsys.readouterr().out
    merged = tmp_path / "merged.md"
    assert bench.main(["--from-json", str(rows), str(rows), "--markdown", str(merged)]) == 0
    assert merged.read_text().count("| Banana, 2-D | mala |") == 2


def test_statistics_flag_shifted_draws(bench, targets) -> None:
    """Exact draws pass; the same draws shifted by 0.2 sd fail the z test."""
    target = targets.make_target("gaussian_100", torch.float64)
    eigenvalues, q = targets.gaussian_eigen()
    rng = np.random.default_rng(3)
    draws = (rng.standard_normal((4, 500, 100)) * np.sqrt(eigenvalues)) @ q.T
    good = bench.statistics(target, draws)
    assert good["max_z"] < bench.Z_LIMIT and good["max_rhat"] < 1.02
    assert good["min_ess"] > 1000 and good["max_sd_err"] < 0.15
    bad = bench.statistics(target, draws + 0.2 * target.ref_sd)
    assert bad["max_z"] > bench.Z_LIMIT


def test_bad_arguments_are_refused(bench) -> None:
    with pytest.raises(SystemExit, match="--targets"):
        bench.main(["--targets", "nope"])
    with pytest.raises(SystemExit, match="--chains"):
        bench.main(["--chains", "0"])
    with pytest.raises(ValueError, match="target must be one of"):
        load_benchmark("posterior_targets").make_target("nope")


@pytest.mark.parametrize("name", ["eight_schools_nc", "eight_schools_c", "german_credit",
                                  "sv_sp500_small", "funnel", "gaussian_100", "banana"])
def test_log_density_is_the_gyms(targets, name: str) -> None:
    pytest.importorskip("tensorflow_probability")
    target = buildable(targets, name)
    points = target.check_points(6, seed=7)
    with torch.no_grad():
        ours = target.log_prob(torch.as_tensor(points)).numpy()
    try:
        ref = targets.gym_log_prob(name, points, "numpy")
    except targets.GymUnavailableError as exc:
        pytest.skip(str(exc))
    # The gym computes in float32: agreement to its rounding, relative to |log p|.
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", ["eight_schools_nc", "eight_schools_c", "german_credit",
                                  "sv_sp500_small", "funnel", "gaussian_100", "banana"])
def test_blackjax_mirror_is_the_torch_density(targets, name: str) -> None:
    jax = pytest.importorskip("jax")
    target = buildable(targets, name)
    peer = load_benchmark("posteriors_blackjax")
    points = target.check_points(4, seed=5)
    with torch.no_grad():
        ours = target.log_prob(torch.as_tensor(points)).numpy()
    logdensity = jax.jit(jax.vmap(peer.log_density(name, target.data)))
    theirs = np.asarray(logdensity(jax.numpy.asarray(points, jax.numpy.float32)))
    np.testing.assert_allclose(theirs, ours, rtol=2e-5, atol=2e-5)
