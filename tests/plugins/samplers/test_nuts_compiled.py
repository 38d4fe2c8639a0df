"""NUTS with a compiled energy-and-gradient call (``nuts(compiled=True)``,
``ebmcore_samplers.compiled.leapfrog.CompiledGradient``).

Compiling costs seconds per graph here, so every test that compiles uses one configuration
(float64 chains of shape (32, 3) over one energy type): one graph for the whole file.
"""

from __future__ import annotations

import copy

import ebmcore_samplers.compiled as compiled
import ebmcore_samplers.compiled.leapfrog as leapfrog
import pytest
import torch
from core_sampler_helpers import BranchingEnergy
from ebmcore_samplers._nuts_tree import transition
from ebmcore_samplers.compiled.leapfrog import CompiledGradient
from ebmcore_samplers.metric import Metric
from ebmcore_samplers.nuts import NUTS

import ebmcore
from ebmcore import diagnostics

pytestmark = pytest.mark.skipif(compiled.compiler_reason(torch.zeros(1)) is not None,
                                reason="torch.compile cannot run here")

#: Largest |z| allowed for a moment estimate against the truth (z = error / MCSE from ESS).
Z_MAX = 4.5
SCALES = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


class ShiftedQuadratic(ebmcore.Energy):
    """``N(MEAN, diag(SCALES²))`` written as a forward only: the gradient is torch.func's."""

    event_shape = (3,)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("precision", SCALES ** -2)
        self.register_buffer("mean", MEAN.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.mean
        return 0.5 * (d * d * self.precision).sum(1)


class RowDependent(ShiftedQuadratic):
    """An energy that declares its value depends on the row (as tempered replicas do)."""

    def take_rows(self, rows: torch.Tensor) -> ebmcore.Energy:
        return self


def _starts(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 3.0 * SCALES * torch.randn(32, 3, generator=gen, dtype=torch.float64)


def test_compiled_gradient_matches_autograd_on_any_number_of_rows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leapfrog, "MIN_BUCKET", 8)
    energy = ShiftedQuadratic()
    x = _starts(0)
    call = CompiledGradient(energy, x)
    assert call.sizes == (8, 32)
    for n in (32, 20, 5, 8):  # batches of 32 rows, then of 8, each compiled once
        z = _starts(n)[:n]
        e, g = call(energy, z)
        zr = z.clone().requires_grad_(True)
        e_ref = energy(zr)
        (g_ref,) = torch.autograd.grad(e_ref.sum(), zr)
        assert e.shape == (n,) and g.shape == (n, 3)
        torch.testing.assert_close(e, e_ref.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    assert call.compile_seconds > 0 and sorted(call._batches) == [8, 32]
    with pytest.raises(ValueError, match="z holds 33 points"):
        call(energy, torch.zeros(33, 3, dtype=torch.float64))


def test_compiled_nuts_builds_the_eager_trees() -> None:
    """From one seed, compiled and eager energy calls give the same draws, float64."""
    energy = ShiftedQuadratic()
    out = []
    for flag in (False, True):
        result = NUTS(compiled=flag, max_tree_depth=6).sample(
            energy, _starts(1), 30, burn_in=30, generator=torch.Generator().manual_seed(2))
        out.append(result)
    eager, comp = out
    torch.testing.assert_close(comp.samples, eager.samples, rtol=1e-9, atol=1e-9)
    assert torch.equal(comp.diagnostics["n_grad_sampling"], eager.diagnostics["n_grad_sampling"])
    assert "compile_seconds" in comp.diagnostics and "compile_seconds" not in eager.diagnostics


def test_compiled_calls_serve_the_torch_bookkeeping_too() -> None:
    """The torch transition (devices other than the CPU) takes the compiled call as well."""
    energy = ShiftedQuadratic()
    x = _starts(7)
    e, g = energy.energy_and_grad(x)
    eps = torch.full((32,), 0.4, dtype=torch.float64)
    metric = Metric(None, 3, x.dtype, x.device)
    call = CompiledGradient(energy, x)
    sizes: list[int] = []

    def compiled_call(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sizes.append(z.shape[0])
        return call(energy, z)

    out = [transition(energy, x, e, g, eps, metric, 5, 1000.0,
                      torch.Generator().manual_seed(8), bookkeeping="torch", evaluate=how)
           for how in (None, compiled_call)]
    for got, want in zip(out[1][:3], out[0][:3], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert torch.equal(out[1][3]["n_grad"], out[0][3]["n_grad"])
    # One compiled call per leaf, on the chains still growing (a doubling that ended in a
    # U-turn is not counted in the depth, but its leaves were evaluated).
    depth = int(out[1][3]["tree_depth"].max())
    assert 2 ** depth - 1 <= len(sizes) <= 2 ** (depth + 1) - 1
    assert sizes[0] == 32 and min(sizes) < 32


def test_compiled_nuts_matches_the_moments() -> None:
    energy = ShiftedQuadratic()
    result = NUTS(compiled=True).sample(
        energy, _starts(3), 120, burn_in=100, return_trajectory=True,
        generator=torch.Generator().manual_seed(4))
    draws = diagnostics.from_trajectory(result.trajectory).double()
    z_mean = (draws.mean((0, 1)) - MEAN) / diagnostics.mcse_mean(draws)
    centred = (draws - MEAN) ** 2
    z_var = (centred.mean((0, 1)) - SCALES ** 2) / diagnostics.mcse_mean(centred)
    assert float(z_mean.abs().max()) < Z_MAX and float(z_var.abs().max()) < Z_MAX
    assert float(diagnostics.rhat(draws).max()) < 1.05
    assert "compiled_refusal" not in result.diagnostics
    # A state copies (the compiled call is shared, not copied) and steps on.
    state = copy.deepcopy(result.state)
    assert state.compiled is result.state.compiled
    state, info = NUTS(compiled=True).step(energy, state, torch.Generator().manual_seed(5))
    assert info["n_grad"].shape == (32,)


@pytest.mark.parametrize(("energy", "reason"), [
    (BranchingEnergy(3), "could not compile"),
    (RowDependent(), "depends on the row"),
])
def test_an_energy_that_cannot_be_compiled_warns_and_runs_eagerly(
        energy: ebmcore.Energy, reason: str) -> None:
    with pytest.warns(RuntimeWarning, match="eagerly"):
        result = NUTS(compiled=True, max_tree_depth=4).sample(
            energy, _starts(6), 10, burn_in=10, generator=torch.Generator().manual_seed(0))
    assert reason in result.diagnostics["compiled_refusal"]
    assert bool(torch.isfinite(result.samples).all())


def test_compiled_flag_is_checked_and_round_trips() -> None:
    with pytest.raises(TypeError, match="compiled"):
        NUTS(compiled=1)  # type: ignore[arg-type]
    again = NUTS()
    again.load_state_dict(NUTS(compiled=True, max_tree_depth=7).state_dict())
    assert again.compiled and again.max_tree_depth == 7


def test_the_compiled_backend_runs_nuts_with_its_calls_compiled() -> None:
    energy = ShiftedQuadratic()
    for kwargs in ({}, {"asynchronous": True}):
        sampler = NUTS(**kwargs)
        result = sampler.sample(energy, _starts(8), 20, burn_in=20, backend="compiled",
                                generator=torch.Generator().manual_seed(9))
        assert result.diagnostics["backend"] == "compiled"
        assert "compile_seconds" in result.diagnostics and not sampler.compiled
    # auto leaves a NUTS without the flag eager, however long the run.
    choice = NUTS().choose_backend(energy, _starts(8), 100_000, burn_in=1000)
    assert choice.backend.name == "torch"
