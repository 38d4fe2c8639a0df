"""Tests of parallel tempering (replica exchange)."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_samplers.mala import MALA
from ebmcore_samplers.nuts import NUTS
from ebmcore_samplers.tempering import ParallelTempering, PTState, RowTemperedEnergy

import ebmcore
from ebmcore.energy import Energy


class Mixture1D(Energy):
    """Two well-separated 1-D Gaussian modes; closed-form gradient; records batch sizes."""

    event_shape = (1,)

    def __init__(self, weights: tuple[float, float], means: tuple[float, float],
                 std: float) -> None:
        super().__init__()
        self.log_w = torch.tensor(weights, dtype=torch.float64).log()
        self.means = torch.tensor(means, dtype=torch.float64)
        self.std = std
        self.batch_sizes: list[int] = []

    def _log_terms(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.means) / self.std  # (B, 2)
        return self.log_w - 0.5 * z ** 2 - math.log(self.std * math.sqrt(2 * math.pi))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        return -torch.logsumexp(self._log_terms(x), dim=1)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.batch_sizes.append(x.shape[0])
        terms = self._log_terms(x)
        resp = torch.softmax(terms, dim=1)
        g = (resp * (x - self.means) / self.std ** 2).sum(1, keepdim=True)
        return -torch.logsumexp(terms, dim=1), g


class StdNormal(Energy):
    """``N(0, I)`` in ``dim`` dimensions with a closed-form gradient."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.event_shape = (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x ** 2).sum(1)

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 0.5 * (x ** 2).sum(1), x.clone()


def chain_mean_mcse(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate and MCSE of a statistic ``(T, B, ...)`` from independent chains' averages."""
    per_chain = values.mean(0)
    return per_chain.mean(0), per_chain.std(0) / per_chain.shape[0] ** 0.5


def test_registered_with_aliases_and_base_by_name() -> None:
    for name in ("parallel_tempering", "pt", "replica_exchange"):
        pt = ebmcore.create("sampler", name, base="mala", temperatures=[1.0, 2.0],
                            base_params={"step_size": 0.1})
        assert isinstance(pt, ParallelTempering)
        assert isinstance(pt.base, MALA)
        assert pt.acceptance_key == pt.base.acceptance_key


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"temperatures": [2.0, 4.0]}, ValueError, "start at 1.0"),
    ({"temperatures": [1.0, 3.0, 2.0]}, ValueError, "strictly increasing"),
    ({"temperatures": [1.0, 1.0]}, ValueError, "strictly increasing"),
    ({"temperatures": [1.0, -2.0]}, ValueError, "positive"),
    ({"temperatures": [1.0, math.inf]}, ValueError, "finite"),
    ({"temperatures": [1.0]}, ValueError, "at least two"),
    ({"temperatures": "1,2"}, TypeError, "temperatures"),
    ({"temperatures": [1.0, "2"]}, TypeError, "temperatures"),
    ({"temperatures": [1.0, 2.0], "swap_every": 0}, ValueError, "swap_every"),
    ({"temperatures": [1.0, 2.0], "base": 3}, TypeError, "base"),
    ({"temperatures": [1.0, 2.0], "base": MALA(0.1), "base_params": {"step_size": 1.0}},
     ValueError, "base_params"),
    ({"temperatures": [1.0, 2.0], "base_params": [1]}, TypeError, "base_params"),
])
def test_invalid_parameters_are_named(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"base": "mala", "base_params": {"step_size": 0.1}, **kwargs}
    with pytest.raises(error, match=match):
        ParallelTempering(**kwargs)


def test_unknown_base_name() -> None:
    with pytest.raises(ebmcore.UnknownComponentError):
        ParallelTempering("no_such_sampler", [1.0, 2.0])


def test_replicas_share_one_energy_call_per_step() -> None:
    energy = Mixture1D((0.5, 0.5), (-1.0, 1.0), 1.0)
    pt = ParallelTempering(MALA(0.1, adapt_step_size=False), [1.0, 2.0, 4.0])
    x0 = torch.zeros(10, 1, dtype=torch.float64)
    x0_copy = x0.clone()
    gen = torch.Generator().manual_seed(0)
    state = pt.init(energy, x0)
    energy.batch_sizes.clear()
    for _ in range(3):
        state, info = pt.step(energy, state, gen)
    assert energy.batch_sizes == [30, 30, 30]
    assert torch.equal(x0, x0_copy)
    assert state.x.shape == (10, 1) and state.base_state.x.shape == (30, 1)
    assert info["accept_prob"].shape == (10,)
    assert info["swap_accept_prob"].shape == (2, 10)
    assert info["swap_attempted"].tolist() == [True, False]  # third round: even pairs again


def test_each_replica_keeps_its_tempered_law() -> None:
    # On N(0, 1), the replica at temperature T must follow N(0, T): a wrong energy or
    # gradient rescaling after a swap would bias the hot or the cold replicas.
    temps = [1.0, 3.0, 9.0]
    energy = StdNormal(2)
    pt = ParallelTempering(MALA(0.3), temps)
    gen = torch.Generator().manual_seed(1)
    b = 300
    state = pt.init(energy, torch.randn(b, 2, dtype=torch.float64, generator=gen))
    for i in range(100):
        state, info = pt.step(energy, state, gen)
        state = pt.adapt(state, info, i, 100)
    kept = []
    for _ in range(200):
        state, _ = pt.step(energy, state, gen)
        kept.append(state.base_state.x.view(3, b, 2).clone())
    x = torch.stack(kept)  # (T, R, B, 2)
    sq, sq_se = chain_mean_mcse((x ** 2).mean(-1).transpose(1, 2))  # per replica
    truth = torch.tensor(temps, dtype=torch.float64)
    assert ((sq - truth).abs() < 5 * sq_se).all(), (sq, sq_se)
    rates = pt.final_diagnostics(state)["swap_acceptance"]
    assert rates.shape == (2,) and ((rates > 0) & (rates < 1)).all()


def test_recovers_mode_weights_where_mala_cannot() -> None:
    # Modes at -4 and +4 (std 0.5) with weights 0.3 / 0.7: the barrier at 0 is about 32 nats
    # above the modes, so a MALA chain started in the left mode stays there (a crossing has
    # probability ~exp(-32) per step). The T = 64 replica sees a barrier of 0.5 nats and
    # carries chains across; swaps bring them down to T = 1.
    energy = Mixture1D((0.3, 0.7), (-4.0, 4.0), 0.5)
    temps = [2.0 ** k for k in range(7)]
    b, burn_in, n_steps = 400, 300, 300
    x0 = torch.full((b, 1), -4.0, dtype=torch.float64)
    pt = ParallelTempering("mala", temps, base_params={"step_size": 0.1})
    res = pt.sample(energy, x0, n_steps, burn_in=burn_in, return_trajectory=True,
                    generator=torch.Generator().manual_seed(2))
    assert res.samples.shape == (b, 1)
    w, w_se = chain_mean_mcse((res.trajectory[..., 0] > 0).double())
    assert abs(w - 0.7) < 5 * w_se, (w, w_se)
    assert res.diagnostics["swap_acceptance"].shape == (len(temps) - 1,)
    assert (res.diagnostics["swap_acceptance"] > 0.1).all()

    # Plain MALA, same number of energy evaluations per chain.
    budget = len(temps) * (burn_in + n_steps)
    mala = MALA(0.1).sample(energy, x0, budget // 2, burn_in=budget // 2,
                            generator=torch.Generator().manual_seed(2))
    w_mala = (mala.samples[:, 0] > 0).double().mean()
    # Stuck where it started (a few chains may jump during the large early steps of
    # step-size adaptation): tens of PT standard errors away from the truth.
    assert abs(w_mala - 0.7) > 50 * w_se, (w_mala, w_se)


def test_nuts_base_follows_row_compaction() -> None:
    # NUTS drops finished chains from the batch; the tempered energy must follow the rows.
    energy = StdNormal(1)
    pt = ParallelTempering(NUTS(max_tree_depth=5), [1.0, 4.0])
    res = pt.sample(energy, torch.zeros(200, 1, dtype=torch.float64), 150, burn_in=100,
                    generator=torch.Generator().manual_seed(3), return_trajectory=True)
    m, m_se = chain_mean_mcse(res.trajectory[..., 0])
    v, v_se = chain_mean_mcse(res.trajectory[..., 0] ** 2)
    assert abs(m) < 5 * m_se and abs(v - 1) < 5 * v_se, (m, m_se, v, v_se)
    assert isinstance(res.state, PTState)
    sub = RowTemperedEnergy(energy, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    part = sub.take_rows(torch.tensor([2, 0]))
    x = torch.ones(2, 1, dtype=torch.float64)
    e, g = part.energy_and_grad(x)
    assert torch.allclose(e, torch.tensor([0.125, 0.5], dtype=torch.float64))
    assert torch.allclose(g[:, 0], torch.tensor([0.25, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="replica rows"):
        sub(x)


def test_same_seed_same_bits() -> None:
    energy = Mixture1D((0.3, 0.7), (-2.0, 2.0), 0.5)
    x0 = torch.zeros(20, 1, dtype=torch.float64)
    runs = [ParallelTempering("mala", [1.0, 2.0, 4.0], base_params={"step_size": 0.2},
                              swap_every=2)
            .sample(energy, x0, 20, burn_in=10,
                    generator=torch.Generator().manual_seed(s)).samples
            for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_conformance_check_sampler() -> None:
    from ebmcore.testing import check_sampler

    check_sampler(ParallelTempering(MALA(0.3), [1.0, 2.0, 4.0]), dim=2, n_chains=100,
                  n_steps=200, burn_in=200)
