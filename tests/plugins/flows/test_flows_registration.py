"""The flows plugin registers every interpolant, coupling and integrator, lazily, documented."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ebmcore
from ebmcore.coupling import Coupling
from ebmcore.errors import UnknownComponentError
from ebmcore.integrator import Integrator
from ebmcore.interpolant import Interpolant

NAMES = {
    "interpolant": (["linear", "cosine", "vp"], Interpolant),
    "coupling": (["independent", "exact_ot", "sinkhorn"], Coupling),
    "integrator": (["euler", "heun", "rk4", "dopri5", "euler_maruyama"], Integrator),
}


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_every_component_is_registered_documented_and_builds(kind):
    names, base = NAMES[kind]
    assert set(names) <= set(ebmcore.names(kind))
    for name in names:
        info = ebmcore.describe(kind, name)
        assert info["plugin"] == "flows" and info["summary"]
        undocumented = [p["name"] for p in info["parameters"] if not p["doc"]]
        assert not undocumented, (name, undocumented)
        assert isinstance(ebmcore.create(kind, name), base)


@pytest.mark.parametrize("kind, alias, cls", [("interpolant", "rectified", "LinearInterpolant"),
                                              ("coupling", "ot", "ExactOTCoupling"),
                                              ("integrator", "em", "EulerMaruyama"),
                                              ("integrators", "Runge-Kutta", "RK4")])
def test_aliases_plurals_and_spelling(kind, alias, cls):
    assert type(ebmcore.create(kind, alias)).__name__ == cls


def test_an_unknown_name_suggests_the_close_one_and_lists_the_kind():
    with pytest.raises(UnknownComponentError, match=r"Did you mean 'rk4'.*Available "
                                                    r"integrators: dopri5, euler"):
        ebmcore.get("integrator", "rk5")
    with pytest.raises(UnknownComponentError, match="Available couplings"):
        ebmcore.get("coupling", "greedy_ot")


def test_the_cli_lists_and_describes_the_new_kinds():
    listing = subprocess.run([sys.executable, "-m", "ebmcore", "list", "interpolant"],
                             capture_output=True, text=True, check=True).stdout
    assert {"linear", "cosine", "vp"} <= {line.split()[0] for line in listing.splitlines()}
    info = subprocess.run([sys.executable, "-m", "ebmcore", "info", "integrator", "rk4"],
                          capture_output=True, text=True, check=True).stdout
    assert "fourth order" in info and "steps" in info
    wrong = subprocess.run([sys.executable, "-m", "ebmcore", "info", "integrator", "rk5"],
                           capture_output=True, text=True)
    assert wrong.returncode == 1 and "Did you mean 'rk4'" in wrong.stderr


def test_plugin_root_imports_neither_torch_nor_the_optional_packages():
    code = ("import sys, ebmcore_flows; ebmcore_flows.ebmcore_interpolants(); "
            "ebmcore_flows.ebmcore_couplings(); ebmcore_flows.ebmcore_integrators(); "
            "print(sorted(m for m in ('torch', 'ot', 'torchdiffeq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
