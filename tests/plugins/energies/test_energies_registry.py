"""Every built-in energy is registered, creatable by name and lazily imported."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ebmcore
from ebmcore.energy import Energy

EXPECTED = {
    "gaussian": dict(mean=[0.0, 0.0]),
    "gaussian_mixture": dict(means=[[0.0, 0.0], [1.0, 1.0]]),
    "double_well": {}, "harmonic": {}, "rastrigin": {}, "rosenbrock": {}, "ackley": {},
    "himmelblau": {}, "styblinski_tang": {}, "banana": {}, "funnel": {}, "ring": {},
    "callable": dict(fn=lambda x: x.pow(2).sum(1)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_create_by_name(name: str) -> None:
    energy = ebmcore.create("energy", name, **EXPECTED[name])
    assert isinstance(energy, Energy)
    shape = energy.event_shape or (2,)
    e = energy(torch.zeros(3, *shape))
    assert e.shape == (3,)


def test_composites_create_by_name() -> None:
    h = ebmcore.create("energy", "harmonic")
    assert isinstance(ebmcore.create("energy", "sum", energies=[h, h]), Energy)
    assert isinstance(ebmcore.create("energy", "tempered", energy=h, temperature=2.0), Energy)
    assert isinstance(ebmcore.create("energy", "product-of-experts", energies=[h]), Energy)


def test_every_name_is_registered_with_a_summary_and_documented_parameters() -> None:
    names = set(ebmcore.names("energy"))
    assert set(EXPECTED) | {"sum", "tempered"} <= names
    for name in names:
        info = ebmcore.describe("energy", name)
        if info["target"].split(".")[0] != "ebmcore_energies":
            continue  # another plugin's energy
        assert info["summary"], name
        for param in info["parameters"]:
            assert param["doc"], f"{name}.{param['name']} has no Args entry"


def test_aliases_resolve() -> None:
    assert type(ebmcore.create("energy", "gmm", means=[[0.0]])).__name__ == "GaussianMixture"
    assert type(ebmcore.create("energy", "Neal-Funnel")).__name__ == "Funnel"


def test_plugin_root_imports_neither_torch_nor_numba() -> None:
    code = ("import sys, ebmcore_energies; ebmcore_energies.ebmcore_energies(); "
            "print('torch' in sys.modules, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
