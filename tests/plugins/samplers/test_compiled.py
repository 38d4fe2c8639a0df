"""backend="compiled": the built-in torch samplers traced by torch.compile in blocks of steps.

Compiling costs seconds per distinct graph here, so the tests share a few configurations
(one graph each): blocks of one step to check the mathematics step for step against the
torch backend, short blocks with a masked tail for the loop's bookkeeping, and errors that
dynamo raises before inductor compiles anything.
"""

from __future__ import annotations

import math

import ebmcore_samplers.compiled as compiled
import pytest
import torch
from core_sampler_helpers import BranchingEnergy
from ebmcore_samplers.compiled import backend as compiled_backend
from ebmcore_samplers.compiled import passes as compiled_passes
from ebmcore_samplers.compiled.loop import CompiledBackend

import ebmcore
from ebmcore.errors import BackendUnavailableError
from ebmcore.evaluation.discrepancy import mmd
from ebmcore.sampling import RunSpec
from ebmcore.testing.sampler_checks import GaussianTarget, check_sampler, correlated_gaussian

pytestmark = pytest.mark.skipif(compiled.compiler_reason(torch.zeros(1)) is not None,
                                reason="torch.compile cannot run here")


class PreconditionedGaussian(GaussianTarget):
    """The check's Gaussian, offering its covariance factor as the preconditioner."""

    def preconditioner(self) -> torch.Tensor:
        return self.chol


class AutogradComposite(ebmcore.Energy):
    """Its own energy_and_grad calls torch.autograd.grad, which dynamo does not trace."""

    event_shape = (2,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x.square().sum(1) + 0.1 * x[:, 0]

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            e = self.forward(x_)
            (g,) = torch.autograd.grad(e.sum(), x_)
        return e.detach(), g


def mlp(seed: int) -> ebmcore.Energy:
    """The registry's MLP energy (wall included) with seeded weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ebmcore.create("model", "mlp", dim=2)


def sample(sampler, energy, x0, n_steps, **kw) -> ebmcore.SampleResult:
    kw.setdefault("generator", torch.Generator().manual_seed(7))
    return sampler.sample(energy, x0, n_steps, **kw)


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    """Over-dispersed float64 starts of 64 chains."""
    return 2.0 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def mlp_x0() -> torch.Tensor:
    """float32 starts of 400 chains for the MLP tests (one compiled graph among them)."""
    return torch.randn(400, 2, generator=torch.Generator().manual_seed(3))


def mlp_langevin(**kw) -> ebmcore.Sampler:
    """The MLP tests' Langevin: blocks of 5 steps, one graph for every step size."""
    sampler = ebmcore.create("sampler", "langevin", **{"step_size": 0.01, **kw})
    sampler.compile_block = 5
    return sampler


# -- the mathematics, step for step ------------------------------------------------------------

STEP_FOR_STEP = [
    ("langevin", {"step_size": 0.1, "grad_clip": 1.5, "clamp": (-2.0, None),
                  "precondition": True}),
    ("mala", {"step_size": 0.3, "precondition": True}),  # adapts in burn-in (eager)
    # a dense mass adapted in burn-in, jitter, and the step-size search at the first step
    ("mala", {"step_size": None, "adapt_mass": "dense", "jitter": 0.2}),
    ("hmc", {"step_size": 0.2, "n_leapfrog": 3, "jitter": 0.3, "adapt_mass": "diag"}),
    ("underdamped_langevin", {"step_size": 0.2, "friction": 1.0}),
]


@pytest.mark.parametrize(("name", "params"), STEP_FOR_STEP,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(STEP_FOR_STEP)])
def test_blocks_of_one_step_reproduce_the_torch_backend(name, params, x64) -> None:
    # With one step per block the per-block draws are the eager step's draws, in the same
    # order, so the chains must agree to rounding: this checks each compiled step's
    # mathematics (clip, clamp, preconditioner, MH ratio, leapfrog, BAOAB), the eager
    # burn-in adaptation that precedes the compiled steps, and the split into chunks.
    target = correlated_gaussian(2)
    energy = PreconditionedGaussian(target.mean, target.cov)
    sampler = ebmcore.create("sampler", name, **params)
    sampler.compile_block = params.get("n_leapfrog", 1)
    sampler.compile_chunk = 32  # two chunks of chains, sharing each block's draws
    runs = {b: sample(sampler, energy, x64, 12, burn_in=20, thin=2, backend=b,
                      return_trajectory=True) for b in ("torch", "compiled")}
    eager, comp = runs["torch"], runs["compiled"]
    assert comp.diagnostics["backend"] == "compiled"
    assert comp.diagnostics["compiled_block"] == 1
    assert comp.diagnostics["compiled_chunk"] == 32
    torch.testing.assert_close(comp.trajectory, eager.trajectory, rtol=0, atol=1e-12)
    torch.testing.assert_close(comp.samples, eager.samples, rtol=0, atol=1e-12)
    for key in ("acceptance", "divergences", "step_size"):
        if key in eager.diagnostics:
            torch.testing.assert_close(comp.diagnostics[key], eager.diagnostics[key],
                                       rtol=0, atol=1e-12)
    if sampler._compiled_adapts():
        assert comp.diagnostics["compiled_from_step"] == 20
    # The returned state continues on the torch backend.
    assert comp.state.t == eager.state.t
    torch.testing.assert_close(comp.state.grad, eager.state.grad, rtol=0, atol=1e-12)


# -- the law -------------------------------------------------------------------------------------

def test_langevin_has_the_ula_variance_and_records_a_subset() -> None:
    # ULA on N(m, diag(s2)) with step eps is stationary at variance s2 / (1 - eps / (2 s2)):
    # 1.111 and 0.417 here against the target's 1 and 0.25.
    eps, s2 = 0.2, torch.tensor([1.0, 0.25], dtype=torch.float64)
    energy = GaussianTarget(torch.tensor([1.0, -1.0]), torch.diag(s2))
    sampler = ebmcore.create("sampler", "langevin", step_size=eps)
    sampler.compile_block = 4
    x0 = torch.randn(4000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result = sample(sampler, energy, x0, 147, burn_in=3, thin=7, backend="compiled",
                    return_trajectory=True, trace_chains=100)
    x = result.samples
    expected = s2 / (1.0 - eps / (2.0 * s2))
    mcse = expected * math.sqrt(2.0 / (x.shape[0] - 1))
    z = (x.var(0) - expected) / mcse
    assert z.abs().max() < 4.5, (x.var(0), expected)
    assert (x.var(0)[1] - s2[1]) / mcse[1] > 10  # clearly ULA's bias, not the target's
    assert (x.mean(0) - energy.mean).abs().max() < 4.5 * (expected / x.shape[0]).sqrt().max()
    # 147 kept steps in blocks of 4 after 3 burn-in steps: a masked tail; 21 kept (thin 7).
    stride = result.diagnostics["trajectory_stride"]
    assert stride == 40 and result.trajectory.shape == (21, 100, 2)
    assert result.diagnostics["compiled_chunk"] == 2000  # CPU chunks, recorded columns kept
    torch.testing.assert_close(result.trajectory[-1], x[::stride][:100], rtol=0, atol=0)
    assert result.diagnostics["energy_trace_steps"].tolist() == list(range(7, 148, 7))
    assert result.state.t == 150


@pytest.fixture(scope="module")
def mala_sampler() -> ebmcore.Sampler:
    """MALA with blocks of 4 steps, shared by the law and the bookkeeping tests."""
    sampler = ebmcore.create("sampler", "mala", step_size=0.5)
    sampler.compile_block = 4
    sampler.compile_chunk = 250  # the 500 chains in two calls
    return sampler


def test_mala_keeps_the_correlated_gaussian(mala_sampler) -> None:
    report = check_sampler(mala_sampler, n_chains=500, n_steps=300, burn_in=150,
                           backend="compiled")
    diagnostics = report["result"].diagnostics
    assert diagnostics["backend"] == "compiled"
    assert diagnostics["compiled_from_step"] == 150  # step sizes adapted eagerly
    assert 0.4 < float(diagnostics["acceptance"].mean()) < 0.75


def test_mala_bookkeeping_matches_the_torch_backend(mala_sampler) -> None:
    target = correlated_gaussian(2)
    x0 = target.sample(500, torch.Generator().manual_seed(2))
    seen: dict[str, list] = {"torch": [], "compiled": []}
    runs = {}
    for backend in ("torch", "compiled"):
        def hook(k: int, x: torch.Tensor, backend: str = backend) -> None:
            seen[backend].append((k, x.clone()))

        runs[backend] = sample(mala_sampler, target, x0, 11, burn_in=5, thin=3,
                               backend=backend, return_trajectory=True, trace_chains=50,
                               on_keep=hook)
    eager, comp = runs["torch"], runs["compiled"]
    assert comp.diagnostics["backend"] == "compiled"
    assert comp.trajectory.shape == eager.trajectory.shape == (3, 50, 2)
    assert [k for k, _ in seen["compiled"]] == [k for k, _ in seen["torch"]] == [0, 1, 2]
    for k, x in seen["compiled"]:
        assert x.shape == x0.shape
        torch.testing.assert_close(comp.trajectory[k], x[::10], rtol=0, atol=0)
    assert (comp.diagnostics["energy_trace_steps"].tolist()
            == eager.diagnostics["energy_trace_steps"].tolist() == [3, 6, 9])
    assert comp.diagnostics["energy_trace"].shape == (3,)
    assert set(eager.diagnostics) <= set(comp.diagnostics)
    assert comp.diagnostics["acceptance"].shape == (500,)
    assert comp.state.t == eager.state.t == 16


def test_mlp_chains_follow_the_law_of_the_torch_backend(mlp_x0) -> None:
    energy = mlp(0)
    sampler = mlp_langevin(step_size=0.05)
    runs = {b: sample(sampler, energy, mlp_x0, 60, backend=b,
                      generator=torch.Generator().manual_seed(s))
            for b, s in (("torch", 11), ("compiled", 12))}
    a, b = runs["torch"].samples, runs["compiled"].samples
    test = mmd(a, b, n_permutations=200, generator=torch.Generator().manual_seed(0))
    assert test.p_value > 0.001, test
    n = a.shape[0]
    mcse = ((a.var(0) + b.var(0)) / n).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() / mcse).max() < 4.5
    var_mcse = (a.var(0) + b.var(0)) * math.sqrt(2.0 / (n - 1))
    assert ((a.var(0) - b.var(0)).abs() / var_mcse).max() < 4.5


# -- determinism, weights, compile cost -----------------------------------------------------------

def test_same_seed_same_bits_and_compiled_once(mlp_x0) -> None:
    energy, sampler = mlp(0), mlp_langevin()
    first = sample(sampler, energy, mlp_x0, 20, backend="compiled")
    again = sample(sampler, energy, mlp_x0, 20, backend="compiled")
    other = sample(sampler, energy, mlp_x0, 20, backend="compiled",
                   generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.samples, again.samples)
    assert not torch.equal(first.samples, other.samples)
    assert again.diagnostics["compile_seconds"] == 0.0  # the block was compiled already
    # Another instance of the same model type, even another step size: the same graph.
    fresh = sample(mlp_langevin(step_size=0.02), mlp(1), mlp_x0, 20, backend="compiled")
    assert fresh.diagnostics["compile_seconds"] == 0.0


def test_weights_changed_between_calls_are_used(mlp_x0) -> None:
    # noise_scale=0 makes Langevin deterministic (gradient descent), so compiled and eager
    # runs must agree to rounding; 7 steps in blocks of 5 also exercise the masked tail.
    energy, sampler = mlp(0), mlp_langevin(noise_scale=0.0)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(sample(sampler, energy, mlp_x0, 7, backend=b).samples
                     for b in ("compiled", "torch"))

    before = both()
    torch.testing.assert_close(*before, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # a training step's in-place update
        for p in energy.parameters():
            p.mul_(1.5)
    after = both()
    torch.testing.assert_close(*after, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after[0], before[0], atol=1e-3)
    energy.load_state_dict(mlp(2).state_dict())  # a checkpoint restored
    torch.testing.assert_close(*both(), rtol=1e-4, atol=1e-5)


# -- can it run, falls back, raises ------------------------------------------------------------

def test_a_graph_break_raises_when_asked_and_falls_back_under_auto(monkeypatch) -> None:
    sampler = ebmcore.create("sampler", "langevin", step_size=0.1)
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(BackendUnavailableError, match="could not compile.*BranchingEnergy"):
        sample(sampler, BranchingEnergy(), x0, 5, backend="compiled")
    monkeypatch.setattr(compiled_backend, "AUTO_CPU_CHAIN_STEPS", 1)  # auto would pick compiled
    gen = torch.Generator().manual_seed(7)
    result = sampler.sample(BranchingEnergy(), x0, 5, backend="auto", generator=gen)
    assert result.diagnostics["backend"] == "torch"
    assert "could not compile" in result.diagnostics["backend_fallback"]
    # The fallback restarted from the generator's state: the same bits as asking torch.
    eager = sample(sampler, BranchingEnergy(), x0, 5, backend="torch")
    assert torch.equal(result.samples, eager.samples)


def test_an_unusable_compiler_raises_or_falls_back(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler on this platform")

    monkeypatch.setattr(compiled_backend, "_BLOCKS", {})
    monkeypatch.setattr(torch, "compile", broken)
    sampler = ebmcore.create("sampler", "mala", step_size=0.3, adapt_step_size=False)
    x0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    energy = mlp(0)
    with pytest.raises(BackendUnavailableError, match="no compiler on this platform"):
        sample(sampler, energy, x0, 5, backend="compiled")
    monkeypatch.setattr(compiled_backend, "AUTO_CPU_CHAIN_STEPS", 1)
    result = sample(sampler, energy, x0, 5, backend="auto")
    assert result.diagnostics["backend"] == "torch"
    assert "no compiler on this platform" in result.diagnostics["backend_fallback"]


def test_dynamo_switched_off_is_a_reason(monkeypatch) -> None:
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "disable", True)
    sampler = ebmcore.create("sampler", "underdamped_langevin", step_size=0.1)
    x0 = torch.randn(20, 2)
    energy = mlp(0)
    assert "TORCHDYNAMO_DISABLE" in CompiledBackend().supports(sampler, energy, x0,
                                                                RunSpec(n_steps=3))
    with pytest.raises(BackendUnavailableError, match="TORCHDYNAMO_DISABLE"):
        sample(sampler, energy, x0, 3, backend="compiled")
    monkeypatch.setattr(compiled_backend, "AUTO_CPU_CHAIN_STEPS", 1)
    result = sample(sampler, energy, x0, 3, backend="auto")
    assert result.diagnostics["backend"] == "torch"
    assert "backend_fallback" not in result.diagnostics


@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")
def test_what_does_not_compile_is_replaced(monkeypatch) -> None:
    # The energy's own energy_and_grad calls torch.autograd.grad (dynamo refuses it), so the
    # block is traced with torch.func.grad instead; and when inductor fails with the CPU
    # graph passes (broken here on purpose), the block is compiled without them.
    import torch._inductor.config

    def broken(graph) -> None:
        raise RuntimeError("a broken graph pass")

    monkeypatch.setattr(compiled_backend, "_BLOCKS", {})
    monkeypatch.setattr(compiled_passes, "_cpu_passes", broken)
    monkeypatch.setattr(torch._inductor.config, "force_disable_caches", True)
    sampler = ebmcore.create("sampler", "langevin", step_size=0.1, noise_scale=0.0)
    sampler.compile_block = 2
    x0 = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    energy = AutogradComposite()
    comp = sample(sampler, energy, x0, 4, backend="compiled")
    eager = sample(sampler, energy, x0, 4, backend="torch")
    assert comp.diagnostics["backend"] == "compiled"
    torch.testing.assert_close(comp.samples, eager.samples, rtol=0, atol=1e-12)
    tried = sorted(key[2] for key in compiled_backend._BLOCKS)  # (own_grad, passes) variants
    assert tried == [(False, False), (False, True), (True, True)]


# -- what auto picks -----------------------------------------------------------------------------

def test_auto_keeps_its_choices_for_short_runs_and_closed_forms(mlp_x0, monkeypatch) -> None:
    sampler = mlp_langevin()
    gauss = correlated_gaussian(2).to(torch.float32)
    assert sample(sampler, mlp(0), mlp_x0, 10).diagnostics["backend"] == "torch"
    monkeypatch.setattr(compiled_backend, "AUTO_CPU_CHAIN_STEPS", 400 * 20)
    assert sample(sampler, mlp(0), mlp_x0, 19).diagnostics["backend"] == "torch"
    picked = sample(sampler, mlp(0), mlp_x0, 20)
    assert picked.diagnostics["backend"] == "compiled"
    assert picked.diagnostics["backend_requested"] == "auto"
    # Closed-form energies keep what the fused-kernel rule picks; a hook keeps torch.
    assert sample(sampler, gauss, mlp_x0, 20).diagnostics["backend"] != "compiled"
    hooked = sample(sampler, mlp(0), mlp_x0, 20, on_keep=lambda k, x: None)
    assert hooked.diagnostics["backend"] == "torch"


def test_chunks_split_the_chains_evenly() -> None:
    assert compiled.chunk_size(10_000, 2048) == 2000
    assert compiled.chunk_size(1000, 2048) == 1000
    assert compiled.chunk_size(5000, 2048) == 1250
    assert compiled.chunk_size(10_007, 2048) == 10_007  # a prime: no equal split
    assert compiled.chunk_size(4000, 2048, record=40) == 2000  # recorded columns line up
    assert compiled.chunk_size(4000, 2048, record=3) == 4000
    assert compiled.chunk_size(10_000, None) == 10_000
