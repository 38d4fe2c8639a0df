"""ChEES with compiled leapfrog blocks (``chees(compiled=True)``,
``ebmcore_samplers.compiled.leapfrog``).

Compiling costs seconds per graph here, so every test that compiles uses one configuration
(float64 chains of shape (32, 3), a diagonal metric, blocks of 4 steps): one graph.
"""

from __future__ import annotations

import copy

import ebmcore_samplers.compiled as compiled
import pytest
import torch
from core_sampler_helpers import BranchingEnergy
from ebmcore_samplers.chees import ChEES, leapfrog_
from ebmcore_samplers.compiled.leapfrog import CompiledLeapfrog
from ebmcore_samplers.metric import Metric

import ebmcore
from ebmcore import diagnostics
from ebmcore.testing.sampler_checks import GaussianTarget

pytestmark = pytest.mark.skipif(compiled.compiler_reason(torch.zeros(1)) is not None,
                                reason="torch.compile cannot run here")

#: Largest |z| allowed for a moment estimate against the truth (z = error / MCSE from ESS).
Z_MAX = 4.5


class Quadratic(ebmcore.Energy):
    """A diagonal Gaussian written as a forward only: its gradient comes from torch.func."""

    event_shape = (3,)

    def __init__(self, scales: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("precision", scales.double() ** -2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x * x * self.precision).sum(1)


SCALES = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)


def _starts(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 3.0 * SCALES * torch.randn(32, 3, generator=gen, dtype=torch.float64)


def test_compiled_blocks_match_the_eager_leapfrog() -> None:
    """7 steps in blocks of 4 (the last with one step masked) give the eager trajectory."""
    energy = Quadratic(SCALES)
    x = _starts(0)
    p = torch.randn(32, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    metric = Metric(torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64), 3, x.dtype, x.device)
    e0, g0 = energy.energy_and_grad(x)
    block = CompiledLeapfrog(energy, x, "diag", 4)
    x1, p1, e1, g1, evals = block(energy, x, p, e0, g0, 0.2, 7, metric.inv)
    assert evals == 8
    xe, pe = x.clone(), p.clone()
    ee, ge = leapfrog_(energy, metric, xe, pe, g0, 0.2, 7)
    for got, want in ((x1, xe), (p1, pe), (e1, ee), (g1, ge)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # The inputs are left as they were.
    torch.testing.assert_close(x, _starts(0), rtol=0, atol=0)


def test_compiled_chees_matches_the_moments_and_counts_its_evaluations() -> None:
    energy = Quadratic(SCALES)
    target = GaussianTarget(torch.zeros(3, dtype=torch.float64), torch.diag(SCALES ** 2))
    result = ChEES(compiled=True, compile_block=4).sample(
        energy, _starts(2), 400, burn_in=400, return_trajectory=True,
        generator=torch.Generator().manual_seed(3), backend="torch")
    draws = diagnostics.from_trajectory(result.trajectory).double()
    z_mean = (draws.mean((0, 1)) - target.mean) / diagnostics.mcse_mean(draws)
    centred = draws * draws
    z_var = (centred.mean((0, 1)) - SCALES ** 2) / diagnostics.mcse_mean(centred)
    assert float(z_mean.abs().max()) < Z_MAX and float(z_var.abs().max()) < Z_MAX
    d = result.diagnostics
    assert "compile_seconds" in d and "compiled_refusal" not in d
    # Every trajectory costs a whole number of blocks.
    assert int(d["n_grad_sampling"][0]) % 4 == 0
    assert float(diagnostics.rhat(draws).max()) < 1.05
    # A state copies (the compiled blocks are shared, not copied) and steps on.
    state = copy.deepcopy(result.state)
    state, info = ChEES(compiled=True).step(energy, state, torch.Generator().manual_seed(4))
    assert info["n_grad"].shape == (32,)


def test_an_energy_that_does_not_trace_warns_and_runs_eagerly() -> None:
    with pytest.warns(RuntimeWarning, match="eagerly"):
        result = ChEES(compiled=True).sample(BranchingEnergy(3), _starts(5), 20, burn_in=20,
                                             generator=torch.Generator().manual_seed(0))
    assert "compiled_refusal" in result.diagnostics
    assert bool(torch.isfinite(result.samples).all())


@pytest.mark.parametrize(("kwargs", "name", "error"), [
    ({"compiled": 1}, "compiled", TypeError),
    ({"compile_block": 0}, "compile_block", ValueError),
    ({"compile_block": 2.5}, "compile_block", TypeError),
])
def test_invalid_compile_settings_are_named(kwargs: dict, name: str, error: type) -> None:
    with pytest.raises(error, match=name):
        ChEES(**kwargs)


def test_settings_round_trip() -> None:
    sampler = ChEES(compiled=True, compile_block=8)
    again = ChEES()
    again.load_state_dict(sampler.state_dict())
    assert again.compiled and again.compile_block == 8
