"""The sampler contract as the core samplers implement it: checks, bits, shapes, diagnostics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from core_sampler_helpers import Counting
from ebmcore_samplers.hmc import HMC
from ebmcore_samplers.langevin import Langevin
from ebmcore_samplers.mala import MALA
from ebmcore_samplers.underdamped import UnderdampedLangevin

from ebmcore.energy import Energy
from ebmcore.errors import BackendUnavailableError
from ebmcore.sampler import Sampler, SamplerState
from ebmcore.sampling.recording import evenly_spaced as _evenly_spaced
from ebmcore.testing.sampler_checks import GaussianTarget

FACTORIES: dict[str, Callable[[], Sampler]] = {
    "langevin": lambda: Langevin(0.05),
    "mala": lambda: MALA(0.3),
    "hmc": lambda: HMC(0.2, n_leapfrog=3, jitter=0.2),
    "hmc_dense": lambda: HMC(0.2, n_leapfrog=3, mass=torch.eye(2) * 2.0,
                              adapt_mass="diag"),
    "underdamped": lambda: UnderdampedLangevin(0.2),
}
all_samplers = pytest.mark.parametrize("name", list(FACTORIES))


class WrongShape(Energy):
    event_shape = (2,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.square().sum(1, keepdim=True)  # (B, 1) instead of (B,)


class Quartic(Energy):
    """``E(x) = sum x^4``: ULA explodes from far-out starts at moderate steps."""

    event_shape = (2,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(4).sum(1)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return 4 * x.pow(3)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward(x), self.grad(x)


def x0_for(n: int = 6, shape: tuple[int, ...] = (2,)) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


@all_samplers
@pytest.mark.parametrize(("kwargs", "match", "error"), [
    ({"n_steps": 0}, "n_steps", ValueError),
    ({"n_steps": 2.0}, "n_steps", TypeError),
    ({"burn_in": -1}, "burn_in", ValueError),
    ({"thin": 0}, "thin", ValueError),
    ({"backend": "gpu"}, "backend", ValueError),
])
def test_bad_arguments_raise_early(name: str, kwargs: dict, match: str, error: type,
                                   gauss2: GaussianTarget) -> None:
    energy = Counting(gauss2)
    with pytest.raises(error, match=match):
        FACTORIES[name]().sample(energy, x0_for(), **{"n_steps": 3, **kwargs})
    assert energy.calls == {"forward": 0, "grad": 0, "energy_and_grad": 0}


@all_samplers
def test_bad_points_raise_early(name: str, gauss2: GaussianTarget) -> None:
    sampler = FACTORIES[name]()
    with pytest.raises(ValueError, match="event shape"):
        sampler.sample(gauss2, torch.zeros(4, 3, dtype=torch.float64), 2)
    bad = x0_for()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        sampler.sample(gauss2, bad, 2)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        sampler.sample(gauss2, torch.zeros(2, dtype=torch.float64), 2)
    with pytest.raises(TypeError, match="floating-point"):
        sampler.sample(gauss2, torch.zeros(4, 2, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="ebmcore.Energy"):
        sampler.sample(lambda x: x.sum(1), x0_for(), 2)
    with pytest.raises(ValueError, match=r"energies of shape \(B,\)"):
        sampler.sample(WrongShape(), x0_for(), 2)


@all_samplers
def test_x0_untouched_and_bits_reproducible(name: str, gauss2: GaussianTarget) -> None:
    x0 = x0_for(8)
    copy = x0.clone()
    runs = [FACTORIES[name]().sample(gauss2, x0, 5, burn_in=20,
                                     generator=torch.Generator().manual_seed(s),
                                     return_trajectory=True) for s in (1, 1, 2)]
    assert torch.equal(x0, copy)
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].trajectory, runs[1].trajectory)
    assert not torch.equal(runs[0].samples, runs[2].samples)


@all_samplers
def test_global_rng_untouched(name: str, gauss2: GaussianTarget) -> None:
    before = torch.get_rng_state()
    sampler = FACTORIES[name]()
    sampler.sample(gauss2, x0_for(), 3, burn_in=2)
    sampler.sample(gauss2, x0_for(), 3, generator=torch.Generator().manual_seed(0))
    state = sampler.init(gauss2, x0_for())
    sampler.step(gauss2, state)  # no generator: a private one, never the global RNG
    assert torch.equal(before, torch.get_rng_state())


@all_samplers
def test_trajectory_and_diagnostics(name: str, gauss2: GaussianTarget) -> None:
    r = FACTORIES[name]().sample(gauss2, x0_for(5), 12, burn_in=4, thin=4,
                                 return_trajectory=True)
    assert r.trajectory.shape == (3, 5, 2)
    assert torch.equal(r.trajectory[-1], r.samples)
    d = r.diagnostics
    assert d["backend"] == "torch" and d["nonfinite_chains"].numel() == 0
    assert d["energy_trace"].shape == d["energy_trace_steps"].shape
    assert set(d["energy_trace_steps"].tolist()) <= {4, 8, 12} and 12 in d["energy_trace_steps"]
    r.state.x.add_(1.0)
    assert torch.equal(r.state.x, r.samples + 1.0)  # samples is a copy of the state
    if name in ("mala", "hmc", "hmc_dense"):
        assert d["acceptance"].shape == (5,) and d["step_size"].shape == (5,)
    if name.startswith("hmc"):
        assert d["divergences"].shape == (5,)


@all_samplers
def test_image_shaped_events(name: str) -> None:
    d = 9
    target = GaussianTarget(torch.zeros(d), torch.eye(d), event_shape=(1, 3, 3))
    sampler = FACTORIES[name]()
    if name == "hmc_dense":
        sampler = HMC(0.2, n_leapfrog=3, mass=torch.eye(d) * 2.0, adapt_mass="dense")
    r = sampler.sample(target, x0_for(4, (1, 3, 3)), 3, burn_in=25, return_trajectory=True)
    assert r.samples.shape == (4, 1, 3, 3) and r.trajectory.shape == (3, 4, 1, 3, 3)
    assert bool(torch.isfinite(r.samples).all())


def test_nonfinite_chains_are_reported_not_replaced() -> None:
    x0 = torch.tensor([[0.1, 0.2], [30.0, 0.0], [0.0, -0.3], [0.0, -40.0]])
    r = Langevin(0.05).sample(Quartic(), x0, 10)
    assert r.diagnostics["nonfinite_chains"].tolist() == [1, 3]
    assert not torch.isfinite(r.samples[[1, 3]]).all(1).any()
    assert torch.isfinite(r.samples[[0, 2]]).all()


def test_backend_choice() -> None:
    class Plain(Sampler):
        def step(self, energy: Energy, state: SamplerState,
                 generator: torch.Generator | None = None):
            return state, {}

    target = GaussianTarget(torch.zeros(2), torch.eye(2))
    with pytest.raises(BackendUnavailableError, match="numba"):
        Plain().sample(target, x0_for(), 2, backend="numba")
    r = Plain().sample(target, x0_for(), 2, backend="auto", progress=True)
    assert r.diagnostics["backend"] == "torch" and r.diagnostics["backend_requested"] == "auto"


def test_evenly_spaced() -> None:
    assert _evenly_spaced(0, 3) == [] and _evenly_spaced(5, 0) == []
    assert _evenly_spaced(4, 10) == [0, 1, 2, 3]
    picks = _evenly_spaced(100, 2)
    assert picks == [49, 99]
    assert len(_evenly_spaced(1000, 10)) == 10 and _evenly_spaced(1000, 10)[-1] == 999


def test_a_chain_non_finite_mid_run_is_reported_even_if_it_recovers() -> None:
    class Walled(Energy):
        """``x^2 / 2`` plus an infinite wall beyond 5 that has no gradient (autograd)."""

        event_shape = (1,)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            wall = torch.where(x[:, 0] > 5, torch.inf, 0.0)
            return 0.5 * x[:, 0] ** 2 + wall

    # Without noise chain 0 goes 12 -> 6 (infinite energy) -> 3 -> ... and ends finite.
    x0 = torch.tensor([[12.0], [1.0]], dtype=torch.float64)
    r = Langevin(0.5, noise_scale=0.0).sample(Walled(), x0, 6)
    assert torch.isfinite(r.samples).all()
    assert r.diagnostics["nonfinite_chains"].tolist() == [0]


def test_fast_finiteness_checks_are_exact() -> None:
    from ebmcore.sampler import check_finite_points, nonfinite_rows

    x = torch.tensor([[1.0, 2.0], [3e38, 3e38], [float("nan"), 0.0], [1.0, float("inf")]])
    # Row 1 overflows its float32 sum but is finite: neither flagged nor refused.
    assert nonfinite_rows(x).tolist() == [False, False, True, True]
    assert check_finite_points("x0", x[:2], (2,)) is not None
    with pytest.raises(ValueError, match="non-finite values \\(in 2 of 4 rows\\)"):
        check_finite_points("x0", x, (2,))
