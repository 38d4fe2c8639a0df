"""With every built-in plugin blocked, a third-party plugin's loss, model and data set train and
evaluate from the command line: the core needs no built-in component for itself."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.slow  # shares the session's wheels and venv (~30 s to build)

#: Keeps the run short: the point is that it runs, not how well it trains.
SHORT = ["--set", "train.steps=20", "--set", "sample.n_chains=200", "--set", "sample.burn_in=50",
         "--set", "sample.n_steps=50", "--set", "evaluate.n_test=2000"]


def _blocked_env(plugin_env) -> dict[str, str]:
    # Every built-in the installed ebmcore has, so that one added later is blocked too.
    records = plugin_env.cli_json(["plugins", "--json"])
    builtins = sorted(r["name"] for r in records if r["builtin"])
    assert builtins, "the installed ebmcore lists no built-in plugin"
    return {"EBMCORE_DISABLED_PLUGINS": ",".join(builtins)}


def test_every_builtin_is_blocked_and_the_example_is_active(plugin_env):
    env = _blocked_env(plugin_env)
    records = {r["name"]: r for r in plugin_env.cli_json(["plugins", "--json"], env=env)}
    for record in records.values():
        if record["builtin"]:
            assert record["status"] == "blocked", record
    assert records["example"]["status"] == "active"
    assert set(plugin_env.cli_json(["list", "model", "--json"], env=env)["model"]) == {
        "rbf_energy"}


def test_train_then_evaluate_on_the_example_alone(plugin_env):
    env = _blocked_env(plugin_env)
    out = plugin_env.workdir / "blocked-run"
    # The data set's recipe names the example's model, loss and sampler; name them as well,
    # so that a recipe that went missing could not hide behind a default.
    done = plugin_env.run(["ebmcore", "train", "--dataset", "gaussian_cross",
                           "--model", "rbf_energy", "--loss", "replay_contrastive",
                           "--sampler", "random_walk_metropolis", *SHORT, "--out", str(out)],
                          env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    config = (out / "config.toml").read_text()
    for name in ("gaussian_cross", "rbf_energy", "replay_contrastive", "random_walk_metropolis"):
        assert f'"{name}"' in config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["kl"] >= 0.0  # judged against the data set's own log_prob

    done = plugin_env.run(["ebmcore", "evaluate", str(out), "--n-test", "2000",
                           "--ais-chains", "50", "--ais-temps", "50", "--json"], env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["dataset"]["name"] == "gaussian_cross"
    # AIS ran from the core's own reference Gaussian and kernel, no built-in sampler needed
    assert math.isfinite(report["ais"]["log_z_lower"])
    assert math.isfinite(report["grid"]["log_z"])
