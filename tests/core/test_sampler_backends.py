"""The one sampling loop and backends as strategies (``ebmcore.sampling``, ``Sampler.sample``).

A third-party backend registered through the ``ebmcore_backends`` hook is found by name,
asked whether it can run a case, run, and its raw result turned into the documented
diagnostics by the core; ``auto`` considers it and falls back to torch when it fails.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

import ebmcore
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.sampling import Backend, RawRun, Recorder, RunSpec, TorchBackend
from ebmcore.testing import isolated_registry
from ebmcore.testing.sampler_checks import GaussianTarget


class Shrink(Sampler):
    """``x <- 0.9 x + 0.1 xi``: a sampler with nothing but ``init`` and ``step``."""

    acceptance_key = "accept"

    def step(self, energy: Any, state: SamplerState,
             generator: torch.Generator | None = None) -> tuple[SamplerState, dict]:
        noise = torch.randn(state.x.shape, generator=generator, dtype=state.x.dtype)
        state.x.mul_(0.9).add_(noise, alpha=0.1)
        state.energy = energy(state.x).detach()
        return state, {"accept": torch.full_like(state.energy, 0.5)}


class Echo(Backend):
    """A backend that moves no chain: it records what it was asked and returns ``x0``."""

    name: ClassVar[str] = "echo"
    seen: ClassVar[list[RunSpec]] = []
    refuse: ClassVar[str | None] = None
    picks: ClassVar[bool] = False

    def supports(self, sampler: Sampler, energy: Any, x: torch.Tensor, run: RunSpec) -> Any:
        return self.refuse

    def rule_picks(self, sampler: Sampler, energy: Any, x: torch.Tensor, run: RunSpec) -> bool:
        return self.picks

    def run(self, sampler: Sampler, energy: Any, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        Echo.seen.append(run)
        recorder = Recorder(run, x0)
        for i in range(run.n_steps):
            if recorder.keeps(i):
                recorder.keep(i, x0, energy_mean=torch.tensor(float(i)))
        trace, steps = recorder.trace()
        nonfinite = torch.zeros(x0.shape[0], dtype=torch.bool)
        nonfinite[1] = True
        return RawRun(samples=x0.clone(), state=None, trajectory=recorder.trajectory,
                      energy_trace=trace, energy_trace_steps=steps, nonfinite=nonfinite,
                      acceptance=torch.ones(x0.shape[0]), extra={"echo": True})


class Broken(Backend):
    """A backend whose run finds it cannot run after all (a toolchain that cannot compile)."""

    name: ClassVar[str] = "broken"

    def supports(self, sampler: Sampler, energy: Any, x: torch.Tensor, run: RunSpec) -> Any:
        return None

    def rule_picks(self, sampler: Sampler, energy: Any, x: torch.Tensor, run: RunSpec) -> bool:
        return True

    def run(self, sampler: Sampler, energy: Any, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        torch.rand(5, generator=generator)  # draws before failing: the fallback undoes it
        raise BackendUnavailableError("no compiler here")


class Plugin:
    """A third-party plugin contributing backends."""

    def __init__(self, *components: ebmcore.Component) -> None:
        self.components = list(components)

    @ebmcore.hookimpl
    def ebmcore_backends(self) -> list[ebmcore.Component]:
        return self.components


@pytest.fixture(autouse=True)
def _reset_echo() -> None:
    Echo.seen, Echo.refuse, Echo.picks = [], None, False


def target() -> GaussianTarget:
    return GaussianTarget(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))


def x0() -> torch.Tensor:
    return torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_a_registered_backend_runs_by_name_and_the_core_builds_its_diagnostics() -> None:
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("echo", Echo, "Echo.")), name="third")
        r = Shrink().sample(target(), x0(), 6, burn_in=2, thin=2, backend="echo",
                            return_trajectory=True, trace_chains=4)
    assert Echo.seen == [RunSpec(n_steps=6, burn_in=2, thin=2, return_trajectory=True,
                                 trace_stride=3)]
    d = r.diagnostics
    assert d["backend"] == "echo" and d["backend_requested"] == "echo"
    assert d["backend_reason"] == "requested"
    assert d["nonfinite_chains"].tolist() == [1]
    assert d["energy_trace"].tolist() == [1.0, 3.0, 5.0]
    assert d["energy_trace_steps"].tolist() == [2, 4, 6]
    assert d["trajectory_stride"] == 3 and d["echo"] is True
    assert torch.equal(d["acceptance"], torch.ones(10))
    assert r.trajectory.shape == (3, 4, 2) and torch.equal(r.trajectory[0], x0()[::3])
    assert r.state is None and torch.equal(r.samples, x0())


def test_a_backend_that_cannot_run_says_why_and_what_can() -> None:
    Echo.refuse = "echo needs a face"
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("echo", Echo, "Echo.")), name="third")
        with pytest.raises(BackendUnavailableError, match="echo needs a face.*Usable backends: "
                                                          "torch"):
            Shrink().sample(target(), x0(), 3, backend="echo")
        r = Shrink().sample(target(), x0(), 3, backend="auto")
    assert r.diagnostics["backend"] == "torch"
    assert "echo: echo needs a face" in r.diagnostics["backend_reason"]


def test_unknown_backends_are_named_with_those_that_exist() -> None:
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("echo", Echo, "Echo.")), name="third")
        with pytest.raises(ValueError, match="backend must be one of auto, torch, echo, got "
                                             "'nope'"):
            Shrink().sample(target(), x0(), 3, backend="nope")


def test_auto_takes_a_backend_its_rule_prefers_and_says_so() -> None:
    Echo.picks = True
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("echo", Echo, "Echo.")), name="third")
        r = Shrink().sample(target(), x0(), 3)
    assert r.diagnostics["backend"] == "echo"
    assert r.diagnostics["backend_reason"].startswith("rule: echo's rule")


def test_on_keep_refuses_a_backend_that_cannot_stream_and_auto_runs_torch() -> None:
    Echo.picks = True
    kept: list[int] = []
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("echo", Echo, "Echo.")), name="third")
        with pytest.raises(BackendUnavailableError, match="cannot call on_keep"):
            Shrink().sample(target(), x0(), 3, backend="echo", on_keep=lambda k, x: None)
        r = Shrink().sample(target(), x0(), 3, on_keep=lambda k, x: kept.append(k))
    assert r.diagnostics["backend"] == "torch" and kept == [0, 1, 2]
    assert "on_keep" in r.diagnostics["backend_reason"]


def test_auto_falls_back_to_torch_with_the_same_bits() -> None:
    want = Shrink().sample(target(), x0(), 4, backend="torch",
                           generator=torch.Generator().manual_seed(3))
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("broken", Broken, "Broken.")), name="third")
        with pytest.raises(BackendUnavailableError, match="no compiler here"):
            Shrink().sample(target(), x0(), 4, backend="broken")
        r = Shrink().sample(target(), x0(), 4, generator=torch.Generator().manual_seed(3))
    assert r.diagnostics["backend"] == "torch"
    assert "backend 'broken' could not run" in r.diagnostics["backend_fallback"]
    assert torch.equal(r.samples, want.samples)


def test_a_broken_backend_plugin_never_breaks_auto() -> None:
    with isolated_registry() as registry:
        registry.register(Plugin(ebmcore.Component("bad", "no_such_module:Backend", "Bad."),
                                 ebmcore.Component("odd", dict, "Not a backend.")),
                          name="third")
        assert Shrink().sample(target(), x0(), 3).diagnostics["backend"] == "torch"
        with pytest.raises(BackendUnavailableError, match="bad.*failed to load"):
            Shrink().sample(target(), x0(), 3, backend="bad")
        with pytest.raises(BackendUnavailableError, match="must build an ebmcore.sampling"):
            Shrink().sample(target(), x0(), 3, backend="odd")


def test_the_torch_loop_tallies_acceptance_and_traces_every_kept_step() -> None:
    r = Shrink().sample(target(), x0(), 8, thin=2, backend="torch")
    assert r.diagnostics["backend_reason"] == "requested"
    assert torch.allclose(r.diagnostics["acceptance"], torch.full((10,), 0.5,
                                                                  dtype=torch.float64))
    assert r.diagnostics["energy_trace_steps"].tolist() == [2, 4, 6, 8]
    assert isinstance(r.state, SamplerState)


def test_choose_backend_says_what_sample_would_run() -> None:
    choice = Shrink().choose_backend(target(), x0(), 5, backend="torch")
    assert isinstance(choice.backend, TorchBackend) and choice.reason == "requested"


def test_supports_compiled_is_declared_false_on_the_base() -> None:
    assert Sampler.supports_compiled is False and Shrink.supports_compiled is False


def test_overriding_a_retired_backend_hook_warns() -> None:
    with pytest.warns(DeprecationWarning, match="_run_backend.*ebmcore_backends"):
        class Legacy(Shrink):
            def _run_backend(self, *args: Any) -> None:
                raise AssertionError("never called")
    assert Legacy().sample(target(), x0(), 2).diagnostics["backend"] == "torch"
