"""backend="compiled" for parallel tempering: the base's compiled step with swaps in the block.

Compiling costs seconds per graph, so the tests share few configurations: blocks of one
step against the torch backend (the same draws in the same order, so the same chains to
rounding), one block of five steps for the law and determinism, and one for training.
"""

from __future__ import annotations

import math

import ebmcore_samplers.compiled as compiled
import pytest
import torch
from ebmcore_samplers.nuts import NUTS
from ebmcore_samplers.tempering import ParallelTempering

import ebmcore
from ebmcore.errors import BackendUnavailableError
from ebmcore.testing.sampler_checks import correlated_gaussian
from ebmcore.train import Trainer

pytestmark = pytest.mark.skipif(compiled.compiler_reason(torch.zeros(1)) is not None,
                                reason="torch.compile cannot run here")


class Mixture1D(ebmcore.Energy):
    """Two 1-D Gaussian modes ``N(-2, 0.5²)`` and ``N(2, 0.5²)``, weights 0.3 and 0.7."""

    event_shape = (1,)
    means = (-2.0, 2.0)
    weights = (0.3, 0.7)
    std = 0.5

    def _log_terms(self, x: torch.Tensor) -> torch.Tensor:
        means = torch.tensor(self.means, dtype=x.dtype, device=x.device)
        log_w = torch.tensor(self.weights, dtype=x.dtype, device=x.device).log()
        return log_w - 0.5 * ((x - means) / self.std) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The energy ``-log p(x)`` up to a constant."""
        return -torch.logsumexp(self._log_terms(x), dim=1)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy and closed-form gradient."""
        terms = self._log_terms(x)
        means = torch.tensor(self.means, dtype=x.dtype, device=x.device)
        g = (torch.softmax(terms, dim=1) * (x - means)).sum(1, keepdim=True) / self.std ** 2
        return -torch.logsumexp(terms, dim=1), g


def chain_mean_mcse(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate and MCSE of a statistic ``(T, B)`` from independent chains' averages."""
    per_chain = values.mean(0)
    return per_chain.mean(), per_chain.std() / per_chain.shape[0] ** 0.5


# -- the mathematics, step for step -------------------------------------------------------------

STEP_FOR_STEP = [
    ("mala", {"step_size": 0.3}, 1),  # adapts in burn-in (eager), swaps every step
    ("langevin", {"step_size": 0.1, "grad_clip": 3.0}, 2),  # whole run compiled
]


@pytest.mark.parametrize(("base", "params", "swap_every"), STEP_FOR_STEP,
                         ids=[c[0] for c in STEP_FOR_STEP])
def test_blocks_of_one_step_reproduce_the_torch_backend(base, params, swap_every) -> None:
    # With one step per block the draws (base noise, then swap uniforms) come in the eager
    # step's order, so the chains agree to rounding: the tempering of energy and gradient,
    # the swap rule and its parity, the tallies, and chunks of whole chains.
    energy = correlated_gaussian(2)
    pt = ParallelTempering(base, [1.0, 2.0, 4.0], swap_every=swap_every, base_params=params)
    pt.compile_block = 1
    pt.compile_chunk = 3 * 32  # rows: two chunks of 32 chains
    x0 = 2.0 * torch.randn(64, 2, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(0))
    eager, comp = (pt.sample(energy, x0, 12, burn_in=20, thin=2, backend=b,
                             return_trajectory=True, generator=torch.Generator().manual_seed(7))
                   for b in ("torch", "compiled"))
    assert comp.diagnostics["backend"] == "compiled"
    assert comp.diagnostics["compiled_chunk"] == 32
    torch.testing.assert_close(comp.trajectory, eager.trajectory, rtol=0, atol=1e-12)
    torch.testing.assert_close(comp.samples, eager.samples, rtol=0, atol=1e-12)
    torch.testing.assert_close(comp.diagnostics["swap_acceptance"],
                               eager.diagnostics["swap_acceptance"], rtol=0, atol=1e-12)
    assert ("acceptance" in comp.diagnostics) == ("acceptance" in eager.diagnostics)
    if "acceptance" in eager.diagnostics:
        torch.testing.assert_close(comp.diagnostics["acceptance"],
                                   eager.diagnostics["acceptance"], rtol=0, atol=1e-12)
    torch.testing.assert_close(comp.diagnostics["replica_diagnostics"],
                               eager.diagnostics["replica_diagnostics"], rtol=0, atol=1e-12)
    # The state continues where the torch backend's does: clocks, tallies, the base's rows.
    a, b = comp.state, eager.state
    assert (a.n_steps, a.n_swaps, a.base_state.t) == (b.n_steps, b.n_swaps, b.base_state.t)
    assert torch.equal(a.swap_attempts, b.swap_attempts)
    torch.testing.assert_close(a.base_state.grad, b.base_state.grad, rtol=0, atol=1e-12)
    assert a.x.data_ptr() == a.base_state.x.data_ptr()  # x is the T = 1 rows, exposed


# -- the law, determinism -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixture_pt() -> ParallelTempering:
    """MALA (fixed step) at four temperatures in blocks of 5 steps, 2 chunks of 100 chains."""
    pt = ParallelTempering("mala", [1.0, 2.0, 4.0, 8.0],
                           base_params={"step_size": 0.1, "adapt_step_size": False})
    pt.compile_block = 5
    pt.compile_chunk = 4 * 100
    return pt


def test_recovers_the_mode_weights_and_moments(mixture_pt) -> None:
    # Every chain starts in the light left mode; the barrier is 8 nats at T = 1 and 1 at
    # T = 8, so the weights 0.3 / 0.7 come back only through the swaps.
    x0 = torch.full((200, 1), -2.0, dtype=torch.float64)
    res = mixture_pt.sample(Mixture1D(), x0, 200, burn_in=200, backend="compiled",
                            return_trajectory=True, trace_chains=100,
                            generator=torch.Generator().manual_seed(2))
    assert res.diagnostics["backend"] == "compiled"
    assert res.trajectory.shape == (200, 100, 1) and res.samples.shape == (200, 1)
    torch.testing.assert_close(res.trajectory[-1], res.samples[::2], rtol=0, atol=0)
    x = res.trajectory[..., 0]
    truths = {"P(x > 0)": ((x > 0).double(), 0.7), "mean": (x, 0.7 * 2 - 0.3 * 2),
              "second moment": (x ** 2, 4.0 + 0.25)}
    for name, (values, truth) in truths.items():
        estimate, mcse = chain_mean_mcse(values)
        assert abs(estimate - truth) < 5 * mcse, (name, estimate, truth, mcse)
    rates = res.diagnostics["swap_acceptance"]
    assert rates.shape == (3,) and ((rates > 0.1) & (rates < 1)).all(), rates
    assert res.state.swap_attempts.tolist() == [100 * 200, 100 * 200, 100 * 200]
    assert 0.5 < float(res.diagnostics["acceptance"].mean()) < 1.0
    assert res.diagnostics["energy_trace"].shape == (200,)


def test_same_seed_same_bits_and_compiled_once(mixture_pt) -> None:
    x0 = torch.linspace(-3.0, 3.0, 200, dtype=torch.float64).view(200, 1)

    def run(seed: int) -> ebmcore.SampleResult:
        # Recording as the law test does: its graph serves (a masked tail included).
        return mixture_pt.sample(Mixture1D(), x0, 23, burn_in=4, backend="compiled",
                                 return_trajectory=True, trace_chains=100,
                                 generator=torch.Generator().manual_seed(seed))

    first, again, other = run(5), run(5), run(6)
    assert torch.equal(first.samples, again.samples)
    assert torch.equal(first.trajectory, again.trajectory)
    assert torch.equal(first.diagnostics["swap_acceptance"],
                       again.diagnostics["swap_acceptance"])
    assert not torch.equal(first.samples, other.samples)
    assert again.diagnostics["compile_seconds"] == 0.0  # the law test's graph, reused
    assert first.state.n_steps == 27 and first.state.n_swaps == 27


# -- what cannot compile ------------------------------------------------------------------------

def test_a_base_without_a_compiled_backend_is_refused_or_runs_eagerly() -> None:
    pt = ParallelTempering(NUTS(max_tree_depth=3), [1.0, 2.0])
    assert not pt.supports_compiled
    assert ParallelTempering("langevin", [1.0, 2.0], base_params={"step_size": 0.1}
                             ).supports_compiled
    x0 = torch.zeros(10, 1, dtype=torch.float64)
    with pytest.raises(BackendUnavailableError, match="base sampler NUTS has no compiled"):
        pt.sample(Mixture1D(), x0, 3, backend="compiled")
    result = pt.sample(Mixture1D(), x0, 3, backend="auto")
    assert result.diagnostics["backend"] == "torch"
    model = ebmcore.create("model", "mlp", dim=2, hidden=[8])
    loss = ebmcore.create("loss", "pt_cd", k=2, sampler=ParallelTempering(NUTS(), [1.0, 2.0]))
    with pytest.raises(ValueError, match="has none"):
        Trainer(model, loss, data="eight_gaussians", compile=True)


# -- training -----------------------------------------------------------------------------------

def _trainer(tmp_path) -> Trainer:
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=[16])
    pt = ParallelTempering("langevin", [1.0, 2.0, 4.0], base_params={"step_size": 0.01})
    pt.compile_block = 3  # one block per training step (k = 3): a small graph
    loss = ebmcore.create("loss", "pt_cd", k=3, sampler=pt)
    return Trainer(model, loss, data="eight_gaussians", steps=4, batch_size=32, seed=0,
                   log_every=2, checkpoint_dir=tmp_path, checkpoint_every=2, compile=True)


def test_pt_cd_trains_compiled_and_resumes_exactly(tmp_path) -> None:
    first = _trainer(tmp_path / "a")
    assert first.compile and first.loss.backend == "compiled"
    history = first.fit()
    assert all(math.isfinite(row["loss"]) for row in history)
    again = _trainer(tmp_path / "b")
    again.resume(tmp_path / "a" / "step-000000002.pt")
    again.fit()
    for p, q in zip(first.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_auto_counts_every_replica_row(monkeypatch) -> None:
    # The auto rule weighs the work of a run: R rows per chain, so tempering over R
    # temperatures repays compiling in a run R times shorter than a plain sampler needs.
    from ebmcore_samplers.compiled import backend as compiled_backend

    model = ebmcore.create("model", "mlp", dim=2, hidden=[8]).requires_grad_(False)
    x = torch.zeros(10, 2)
    pt = ParallelTempering("langevin", [1.0, 2.0, 4.0, 8.0], base_params={"step_size": 0.01})
    monkeypatch.setattr(compiled_backend, "AUTO_CPU_CHAIN_STEPS", 10 * 4 * 50)
    assert pt.compiled_rows_per_chain == 4
    assert compiled.auto_picks_compiled(model, x, 50, rows_per_chain=4)
    assert not compiled.auto_picks_compiled(model, x, 49, rows_per_chain=4)
    assert not compiled.auto_picks_compiled(model, x, 50)  # one row per chain: too short
    for n_steps, expected in ((50, "compiled"), (49, "torch")):
        assert pt.choose_backend(model, x, n_steps).backend.name == expected
