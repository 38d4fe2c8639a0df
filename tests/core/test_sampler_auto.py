"""``auto`` measures (``ebmcore.sampling.auto``): timed trials on long runs, a cache per case,
the rule on short runs, and runs whose results the trials never touch."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import pytest
import torch

import ebmcore
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.sampling import Backend, RawRun, RunSpec, auto, clear_auto_cache
from ebmcore.testing import isolated_registry
from ebmcore.testing.sampler_checks import GaussianTarget

LONG = 100  # steps: with 1,000 chains long enough to time backends (see the fixture)


class Walk(Sampler):
    """A random walk whose torch step costs ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def step(self, energy: Any, state: SamplerState,
             generator: torch.Generator | None = None) -> tuple[SamplerState, dict]:
        if self.delay:
            time.sleep(self.delay)
        state.x.add_(torch.randn(state.x.shape, generator=generator, dtype=state.x.dtype),
                     alpha=0.1)
        state.energy = energy(state.x).detach()
        return state, {}


class Paced(Backend):
    """A backend whose every step sleeps ``delay`` seconds and whose rule prefers it."""

    name: ClassVar[str] = "paced"
    delay: ClassVar[float] = 0.0
    calls: ClassVar[int] = 0

    def supports(self, sampler: Sampler, energy: Any, x: torch.Tensor, run: RunSpec) -> Any:
        return None

    def rule_picks(self, sampler: Sampler, energy: Any, x: torch.Tensor, run: RunSpec) -> bool:
        return True

    def case_key(self, sampler: Sampler, energy: Any, x: torch.Tensor) -> tuple[Any, ...]:
        return ("paced-v1",)

    def run(self, sampler: Sampler, energy: Any, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        Paced.calls += 1
        time.sleep(self.delay * run.n_total)
        empty = torch.empty(0, dtype=x0.dtype)
        return RawRun(samples=x0.clone(), state=None, energy_trace=empty,
                      energy_trace_steps=torch.empty(0, dtype=torch.long),
                      nonfinite=torch.zeros(x0.shape[0], dtype=torch.bool))


class Plugin:
    @ebmcore.hookimpl
    def ebmcore_backends(self) -> list[ebmcore.Component]:
        return [ebmcore.Component("paced", Paced, "Sleeps per step.")]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(auto.ENV_CACHE, raising=False)
    monkeypatch.setattr(auto, "MEASURE_MIN_STEPS", LONG)
    monkeypatch.setattr(auto, "MEASURE_MIN_WORK", 1_000 * LONG * 2)
    clear_auto_cache()
    Paced.delay, Paced.calls = 0.0, 0
    # One torch thread: on a busy machine a second one stalls for tens of milliseconds at
    # random, which these tests (about the logic, not the machine) need not weather.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with isolated_registry() as registry:
            registry.register(Plugin(), name="third")
            yield
    finally:
        torch.set_num_threads(threads)
        clear_auto_cache()


def target() -> GaussianTarget:
    return GaussianTarget(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))


def x0(n: int = 1_000) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_a_long_run_times_the_backends_and_takes_the_faster() -> None:
    Paced.delay = 0.002  # much slower than a 1,000-chain torch step
    r = Walk().sample(target(), x0(), LONG, generator=torch.Generator().manual_seed(1))
    d = r.diagnostics
    assert d["backend"] == "torch", d["backend_reason"]
    assert d["backend_reason"].startswith("measured: predicted")
    assert "paced" in d["backend_reason"] and d["backend_trial_seconds"] > 0
    # The trials never touched the run's generator: the bits of backend='torch'.
    want = Walk().sample(target(), x0(), LONG, backend="torch",
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(r.samples, want.samples)


def test_a_faster_backend_wins_the_trial() -> None:
    r = Walk(delay=0.001).sample(target(), x0(), LONG)
    assert r.diagnostics["backend"] == "paced"
    assert r.diagnostics["backend_reason"].startswith("measured")


def test_the_winner_is_cached_per_case_and_a_different_case_measures_again() -> None:
    Paced.delay = 0.002
    first = Walk().sample(target(), x0(), LONG)
    assert first.diagnostics["backend"] == "torch", first.diagnostics["backend_reason"]
    calls = Paced.calls
    again = Walk().sample(target(), x0(1_100), 2 * LONG)  # same chains bucket (1,024)
    assert Paced.calls == calls  # no new trial
    assert again.diagnostics["backend_reason"].startswith("measured fastest on this case "
                                                          "earlier")
    other = Walk().sample(target(), x0(4_000), LONG)  # another bucket: measured afresh
    assert other.diagnostics["backend_reason"].startswith("measured: predicted")


def test_short_runs_keep_the_rule() -> None:
    Paced.delay = 0.002
    r = Walk().sample(target(), x0(), LONG - 1)
    assert r.diagnostics["backend"] == "paced" and Paced.calls == 1
    assert "too short to time backends" in r.diagnostics["backend_reason"]
    small = Walk().sample(target(), x0(10), 10 * LONG)  # little work: short too
    assert "too short" in small.diagnostics["backend_reason"]


def test_a_near_tie_keeps_the_rules_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    predictions = {"torch": 1.0, "paced": 1.2}
    def trials(*args: Any) -> tuple[dict[str, auto.Trial], list[str]]:
        # One round each, predicting exactly ``predictions`` seconds.
        return {n: auto.Trial(1, ((0.0, p),), 2) for n, p in predictions.items()}, []

    monkeypatch.setattr(auto, "predict_all", trials)
    r = Walk().sample(target(), x0(), LONG)
    assert r.diagnostics["backend"] == "paced"
    assert "so the rule's paced stays" in r.diagnostics["backend_reason"]
    clear_auto_cache()
    predictions["paced"] = 1.3  # beyond the margin: the measurement wins
    assert Walk().sample(target(), x0(), LONG).diagnostics["backend"] == "torch"


def test_the_cache_persists_on_disk_when_asked(tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "auto.json"
    monkeypatch.setenv(auto.ENV_CACHE, str(path))
    Paced.delay = 0.002
    Walk().sample(target(), x0(), LONG)
    stored = json.loads(path.read_text())
    (entry,) = stored.values()
    assert entry["backend"] == "torch" and set(entry["predicted_seconds"]) == {"torch", "paced"}
    clear_auto_cache()  # a new process: memory empty, the file read back
    calls = Paced.calls
    r = Walk().sample(target(), x0(), LONG)
    assert Paced.calls == calls and "earlier" in r.diagnostics["backend_reason"]


def test_an_unreadable_cache_file_is_measured_over(tmp_path: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "auto.json"
    path.write_text("not json")
    monkeypatch.setenv(auto.ENV_CACHE, str(path))
    r = Walk().sample(target(), x0(), LONG)
    assert r.diagnostics["backend_reason"].startswith("measured")
    assert len(json.loads(path.read_text())) == 1


def test_a_trial_overrides_the_rule_only_when_every_round_agrees() -> None:
    steady = auto.Trial(2, ((0.01, 0.03), (0.012, 0.032)), 101)
    assert steady.seconds == pytest.approx(0.01 + 100 * 0.01)
    assert steady.spread == (pytest.approx(1.01), pytest.approx(1.012))
    noisy = auto.Trial(2, ((0.01, 0.03), (0.01, 0.07)), 101)  # one round stalled
    assert noisy.spread[1] == pytest.approx(0.01 + 100 * 0.03)


def test_trial_steps_grow_with_the_run_within_bounds() -> None:
    assert auto.trial_steps(100) == 2 and auto.trial_steps(500) == 5
    assert auto.trial_steps(100_000) == 8
