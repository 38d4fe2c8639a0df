"""A third-party interpolant, coupling and integrator, installed from a wheel, found by name."""

from __future__ import annotations


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
