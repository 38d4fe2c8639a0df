"""The sampling loop's counts and early stop (issue #24): gradient evaluations split into
warm-up and sampling, the mean tree depth, ``time_limit`` and ``should_stop``."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import torch

from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.sampling import RunSpec
from ebmcore.sampling.auto import choose
from ebmcore.sampling.torch_loop import TorchBackend
from ebmcore.testing.sampler_checks import correlated_gaussian


class Tree(Sampler):
    """A fake tree sampler: step ``t`` reports depth ``t % 3`` and ``2 ** depth`` gradients
    for chain 0, twice that for the others, and accepts with probability 0.5."""

    acceptance_key = "accept_prob"
    divergence_key = "divergent"

    def init(self, energy: Any, x: torch.Tensor) -> SamplerState:
        state = super().init(energy, x)
        state.t = 0  # type: ignore[attr-defined]
        return state

    def step(self, energy: Any, state: SamplerState,
             generator: torch.Generator | None = None) -> tuple[SamplerState, dict]:
        b = state.x.shape[0]
        depth = state.t % 3  # type: ignore[attr-defined]
        state.t += 1  # type: ignore[attr-defined]
        n_grad = torch.full((b,), 2 * 2 ** depth, dtype=torch.long)
        n_grad[0] = 2 ** depth
        return state, {"accept_prob": torch.full((b,), 0.5, dtype=state.x.dtype),
                       "divergent": torch.zeros(b, dtype=torch.bool),
                       "n_grad": n_grad, "tree_depth": torch.full((b,), depth)}


class Fixed(Sampler):
    """A sampler that declares ``grads_per_step`` and reports no ``n_grad``."""

    grads_per_step = 3

    def step(self, energy: Any, state: SamplerState,
             generator: torch.Generator | None = None) -> tuple[SamplerState, dict]:
        return state, {}


@pytest.fixture
def target() -> Any:
    return correlated_gaussian(2)


X0 = torch.zeros(4, 2, dtype=torch.float64)


def test_counts_are_split_between_warmup_and_sampling(target: Any) -> None:
    # burn-in steps 0..4 have depths 0,1,2,0,1 (gradients 1,2,4,1,2 = 10 for chain 0);
    # kept steps 5..10 have depths 2,0,1,2,0,1 (4,1,2,4,1,2 = 14), mean depth 1.
    d = Tree().sample(target, X0, 6, burn_in=5).diagnostics
    assert d["n_grad_warmup"].tolist() == [10, 20, 20, 20]
    assert d["n_grad_sampling"].tolist() == [14, 28, 28, 28]
    assert d["n_grad_warmup"].dtype == torch.long
    assert torch.allclose(d["tree_depth"], torch.ones(4, dtype=torch.float64))
    assert torch.allclose(d["acceptance"], torch.full((4,), 0.5, dtype=torch.float64))
    assert d["divergences"].tolist() == [0, 0, 0, 0]
    assert "stopped_early" not in d


def test_a_declared_grads_per_step_counts_without_infos(target: Any) -> None:
    d = Fixed().sample(target, X0, 7, burn_in=2).diagnostics
    assert d["n_grad_warmup"].tolist() == [6] * 4
    assert d["n_grad_sampling"].tolist() == [21] * 4
    assert "tree_depth" not in d


def test_samplers_without_gradient_counts_report_none(target: Any) -> None:
    class Still(Sampler):
        def step(self, energy: Any, state: SamplerState, generator: Any = None) -> Any:
            return state, {}

    d = Still().sample(target, X0, 3).diagnostics
    assert "n_grad_warmup" not in d and "n_grad_sampling" not in d


def test_should_stop_ends_the_run_cleanly_with_what_it_has(target: Any) -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= 9  # asked after each step: stops after burn-in 4 + 5 kept

    r = Tree().sample(target, X0, 100, burn_in=4, thin=2, return_trajectory=True,
                      should_stop=stop)
    d = r.diagnostics
    assert d["stopped_early"] == "should_stop"
    assert d["n_steps_done"] == 5 and d["burn_in_done"] == 4
    assert r.trajectory.shape == (2, 4, 2)  # kept steps 2 and 4 of the 5 run
    # depths of kept steps 4..8: 1,2,0,1,2 -> gradients 2,4,1,2,4 for chain 0
    assert d["n_grad_sampling"].tolist() == [13, 26, 26, 26]
    assert torch.allclose(d["tree_depth"], torch.full((4,), 1.2, dtype=torch.float64))


def test_a_stop_during_burn_in_says_so_and_keeps_nothing(target: Any) -> None:
    calls = []
    r = Tree().sample(target, X0, 10, burn_in=6, return_trajectory=True,
                      should_stop=lambda: calls.append(1) or len(calls) >= 3)
    d = r.diagnostics
    assert d["stopped_early"] == "should_stop"
    assert d["burn_in_done"] == 3 and d["n_steps_done"] == 0
    assert r.trajectory.shape == (0, 4, 2)
    assert "acceptance" not in d and "tree_depth" not in d
    assert d["n_grad_warmup"].tolist() == [7, 14, 14, 14]
    assert d["n_grad_sampling"].tolist() == [0] * 4


def test_a_time_limit_stops_a_long_run(target: Any) -> None:
    class Slow(Fixed):
        def step(self, energy: Any, state: SamplerState, generator: Any = None) -> Any:
            time.sleep(0.002)
            return state, {}

    started = time.perf_counter()
    d = Slow().sample(target, X0, 100_000, time_limit=0.1).diagnostics
    assert time.perf_counter() - started < 5.0  # 100,000 steps would take 200 s
    assert d["stopped_early"] == "time_limit"
    assert 1 <= d["n_steps_done"] < 100_000
    assert d["n_grad_sampling"].tolist() == [3 * d["n_steps_done"]] * 4


@pytest.mark.parametrize(("value", "error"), [
    (0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    (True, TypeError), ("10", TypeError)])
def test_a_bad_time_limit_is_named(target: Any, value: Any, error: type) -> None:
    with pytest.raises(error, match="time_limit"):
        Fixed().sample(target, X0, 3, time_limit=value)


def test_a_bad_should_stop_is_named(target: Any) -> None:
    with pytest.raises(TypeError, match="should_stop"):
        Fixed().sample(target, X0, 3, should_stop=True)


def test_stopping_runs_go_to_backends_that_honour_it(target: Any) -> None:
    class NoStop(TorchBackend):
        name = "nostop"
        stops = False

    run = RunSpec(n_steps=10, time_limit=1.0)
    torch_backend = TorchBackend()
    choice = choose(Fixed(), target, X0, "auto", run, torch_backend, {"nostop": NoStop()})
    assert choice.backend is torch_backend and "time_limit" in choice.reason
    with pytest.raises(BackendUnavailableError, match="time_limit"):
        choose(Fixed(), target, X0, "nostop", run, torch_backend, {"nostop": NoStop()})
    # Without a stop condition the same backend is eligible.
    plain = choose(Fixed(), target, X0, "nostop", RunSpec(n_steps=10), torch_backend,
                   {"nostop": NoStop()})
    assert plain.backend.name == "nostop"
