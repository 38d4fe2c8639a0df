"""A third-party interpolant, coupling and integrator, installed from a wheel, found by name."""

from __future__ import annotations

import json


def test_flow_components_from_an_installed_plugin_are_found_by_name(plugin_env):
    out = plugin_env.probe("""
        import torch

        import ebmcore.registry
        from ebmcore.testing import check_coupling, check_integrator, check_interpolant

        quadratic = ebmcore.create("interpolant", "quadratic")
        check_interpolant(quadratic)
        shuffle = ebmcore.create("couplings", "fixture-flows:shuffle")
        check_coupling(shuffle)
        midpoint = ebmcore.create("integrator", "midpoint", steps=40)
        check_integrator(midpoint, order=2)
        result = midpoint.integrate(lambda x, t: -x, torch.ones(3), 0.0, 1.0)
        print(json.dumps({
            "names": {kind: ebmcore.names(kind)
                      for kind in ("interpolant", "coupling", "integrator")},
            "provenance": ebmcore.registry.provenance("integrator", "midpoint"),
            "builtin": ebmcore.registry.provenance("integrator", "rk4"),
            "record": records()["fixture-flows"],
            "nfe": result.nfe,
        }))
    """, fixtures=("flows",))
    assert "quadratic" in out["names"]["interpolant"] and "linear" in out["names"]["interpolant"]
    assert {"shuffle", "exact_ot"} <= set(out["names"]["coupling"])
    assert {"midpoint", "dopri5"} <= set(out["names"]["integrator"])
    assert out["provenance"]["distribution"] == "ebmcore-fixture-flows"
    assert out["builtin"]["plugin"] == "flows" and out["builtin"]["builtin"]
    assert out["record"]["status"] == "active"
    assert out["record"]["components"] == {"interpolant": ["quadratic"],
                                           "coupling": ["shuffle"],
                                           "integrator": ["midpoint"]}
    assert out["nfe"] == 80
    listing = plugin_env.run(["ebmcore", "list", "integrators"], fixtures=("flows",))
    assert "midpoint" in listing.stdout and "euler_maruyama" in listing.stdout
    info = plugin_env.run(["ebmcore", "info", "integrator", "midpont"], fixtures=("flows",))
    assert info.returncode == 1 and "Did you mean 'midpoint'" in info.stderr


def test_train_and_sample_use_the_plugins_flow_components_by_name(plugin_env):
    """``ebmcore train`` takes the plugin's interpolant and coupling into flow_matching and its
    integrator into the flow sampler and the likelihood; ``sample --checkpoint`` reuses them."""
    run = plugin_env.workdir / "fixture-flow-run"
    done = plugin_env.run(
        ["ebmcore", "train", "--dataset", "eight_gaussians", "--loss", "flow_matching",
         "--set", "loss.interpolant=quadratic", "--set", "loss.coupling=shuffle",
         "--set", "sampler.integrator=midpoint", "--set", "sampler.steps=10",
         "--set", "evaluate.integrator=midpoint", "--set", "train.steps=5",
         "--set", "train.batch_size=32", "--set", "model.hidden=[16]",
         "--set", "evaluate.n_test=200", "--set", "evaluate.likelihood_points=20",
         "--set", "sample.n_chains=100", "--threads", "1", "--quiet", "--out", str(run)],
        fixtures=("flows",))
    assert done.returncode == 0, done.stderr[-3000:]
    config = (run / "config.toml").read_text()
    assert 'interpolant = "quadratic"' in config and 'coupling = "shuffle"' in config
    assert 'integrator = "midpoint"' in config
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["flow_sampling"]["integrator"] == "Midpoint(steps=10)"
    assert metrics["flow_sampling"]["nfe"] == 20  # two evaluations per midpoint step
    assert metrics["likelihood"]["integrator"].startswith("Midpoint")
    out = plugin_env.workdir / "fixture-flow-samples"
    done = plugin_env.run(["ebmcore", "sample", "--checkpoint", str(run / "model.pt"),
                           "--chains", "30", "--set", "sampler.steps=3", "--out", str(out),
                           "--quiet"], fixtures=("flows",))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["integrator"] == "Midpoint(steps=3)" and report["nfe"] == 6
    info = plugin_env.run(["ebmcore", "info", "interpolant", "quadratic"], fixtures=("flows",))
    assert info.returncode == 0 and "ebmcore-fixture-flows" in info.stdout
