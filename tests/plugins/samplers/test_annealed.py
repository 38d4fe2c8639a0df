"""Tests of annealed Langevin dynamics."""

from __future__ import annotations

import math

import pytest
import torch
from ebmcore_samplers.annealed import AnnealedLangevin, is_noise_conditional

import ebmcore
from ebmcore.energy import Energy


class NoisyGaussian(Energy):
    """Data ``N(mu, s^2 I)`` convolved with ``N(0, sigma^2 I)``: ``N(mu, (s^2 + sigma^2) I)``.

    Noise-conditional through ``forward(x, sigma=None)``; the gradient comes from autograd.
    """

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.mu, self.s = mu, s
        self.event_shape = tuple(mu.shape)
        self.sigmas_seen: list[float] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        var = torch.full((x.shape[0],), self.s ** 2, dtype=x.dtype)
        if sigma is not None:
            self.sigmas_seen.append(float(sigma[0]))
            var = var + sigma ** 2
        return 0.5 * ((x - self.mu) ** 2).sum(1) / var


class ClosedFormNoisyGaussian(Energy):
    """The same law, declared with ``noise_conditional`` and a closed-form gradient."""

    noise_conditional = True

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.mu, self.s = mu, s
        self.event_shape = tuple(mu.shape)
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.energy_and_grad(x, sigma)[0]

    def energy_and_grad(self, x: torch.Tensor, sigma: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        var = self.s ** 2 + (0.0 if sigma is None else sigma ** 2)
        var = torch.as_tensor(var, dtype=x.dtype).expand(x.shape[0]).unsqueeze(1)
        d = x - self.mu
        return 0.5 * (d ** 2 / var).sum(1), d / var


def exact_final_law(sampler: AnnealedLangevin, s: float, m0: float, v0: float,
                    n_steps: int) -> tuple[float, float]:
    """Mean offset and variance per coordinate after ``n_steps`` of the linear ULA recursion.

    On a Gaussian, each step maps ``N(m, v)`` to ``N(a m, a^2 v + alpha)`` with
    ``a = 1 - alpha / (2 (s^2 + sigma^2))`` (means measured from ``mu``): the exact law of
    the sampler's output, discretisation and annealing included.
    """
    m, v = m0, v0
    for t in range(n_steps):
        sigma = sampler.sigmas[sampler.level(t)]
        alpha = sampler.alpha(t)
        a = 1.0 - alpha / (2.0 * (s ** 2 + sigma ** 2))
        m, v = a * m, a * a * v + alpha
    return m, v


def test_registered() -> None:
    sampler = ebmcore.create("sampler", "annealed_langevin", sigmas=[1.0, 0.1])
    assert isinstance(sampler, AnnealedLangevin)
    assert sampler.n_schedule_steps == 200


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"sigmas": [1.0, 1.0]}, ValueError, "strictly decreasing"),
    ({"sigmas": [0.1, 1.0]}, ValueError, "strictly decreasing"),
    ({"sigmas": [1.0, 0.0]}, ValueError, "positive"),
    ({"sigmas": [1.0, math.nan]}, ValueError, "finite"),
    ({"sigmas": []}, ValueError, "at least one"),
    ({"sigmas": 0.5}, TypeError, "sigmas"),
    ({"sigmas": [1.0], "steps_per_sigma": 0}, ValueError, "steps_per_sigma"),
    ({"sigmas": [1.0], "step_size": -1.0}, ValueError, "step_size"),
])
def test_invalid_parameters_are_named(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        AnnealedLangevin(**kwargs)


def test_step_sizes_follow_the_noise_levels() -> None:
    sampler = AnnealedLangevin([4.0, 2.0, 1.0], steps_per_sigma=3, step_size=0.01)
    assert [sampler.level(t) for t in range(11)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert sampler.alpha(0) == pytest.approx(0.16)
    assert sampler.alpha(4) == pytest.approx(0.04)
    assert sampler.alpha(8) == pytest.approx(0.01)


def test_energy_receives_each_level_once_per_step() -> None:
    energy = NoisyGaussian(torch.zeros(2, dtype=torch.float64), 1.0)
    assert is_noise_conditional(energy)
    sampler = AnnealedLangevin([3.0, 2.0, 1.0], steps_per_sigma=2, step_size=0.01)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x0_copy = x0.clone()
    res = sampler.sample(energy, x0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x0, x0_copy)
    # init at level 0, then after each step the level of the following step.
    assert energy.sigmas_seen == [3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0]
    assert res.diagnostics["noise_conditional"] is True
    assert res.diagnostics["final_sigma"] == 1.0
    assert res.diagnostics["n_steps"] == 6


@pytest.mark.parametrize("energy_cls", [NoisyGaussian, ClosedFormNoisyGaussian])
def test_final_law_matches_exact_recursion_and_data(energy_cls: type) -> None:
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    s = 0.5
    energy = energy_cls(mu, s)
    sampler = AnnealedLangevin(torch.logspace(math.log10(5.0), math.log10(0.05), 10),
                               steps_per_sigma=100, step_size=1.0 * 0.05 ** 2)
    b, m0, v0 = 4000, 3.0, 25.0
    gen = torch.Generator().manual_seed(2)
    x0 = mu + m0 + math.sqrt(v0) * torch.randn(b, 2, dtype=torch.float64, generator=gen)
    res = sampler.sample(energy, x0, generator=gen)
    m_exact, v_exact = exact_final_law(sampler, s, m0, v0, sampler.n_schedule_steps)
    z = res.samples - mu  # both coordinates are independent draws of the same law
    n = z.numel()
    m_hat, v_hat = z.mean(), z.var()
    m_se, v_se = math.sqrt(v_exact / n), v_exact * math.sqrt(2.0 / n)
    assert abs(m_hat - m_exact) < 5 * m_se, (m_hat, m_exact, m_se)
    assert abs(v_hat - v_exact) < 5 * v_se, (v_hat, v_exact, v_se)
    # Against the data law N(mu, s^2): off by at most the schedule's exact bias + MCSE.
    bias_m, bias_v = abs(m_exact), abs(v_exact - s ** 2)
    assert bias_v < 0.05 * s ** 2  # this schedule ends close to the data
    assert abs(m_hat) < bias_m + 5 * m_se
    assert abs(v_hat - s ** 2) < bias_v + 5 * v_se
    if energy_cls is ClosedFormNoisyGaussian:
        assert energy.calls == sampler.n_schedule_steps + 1  # one call per step, no autograd


def test_plain_energy_runs_without_noise_level() -> None:
    class Plain(Energy):
        event_shape = (1,)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x ** 2).sum(1)

    assert not is_noise_conditional(Plain())
    res = AnnealedLangevin([1.0, 0.5], steps_per_sigma=5, step_size=0.01).sample(
        Plain(), torch.zeros(4, 1), generator=torch.Generator().manual_seed(0))
    assert res.diagnostics["noise_conditional"] is False
    assert res.samples.shape == (4, 1)


def test_same_seed_same_bits_and_schedule_checks() -> None:
    energy = ClosedFormNoisyGaussian(torch.zeros(3), 1.0)
    sampler = AnnealedLangevin([2.0, 1.0], steps_per_sigma=10, step_size=0.05)
    x0 = torch.zeros(8, 3)
    runs = [sampler.sample(energy, x0, generator=torch.Generator().manual_seed(k)).samples
            for k in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    with pytest.raises(ValueError, match="burn_in"):
        sampler.sample(energy, x0, burn_in=20)
    res = sampler.sample(energy, x0, burn_in=5, generator=torch.Generator().manual_seed(3))
    assert res.diagnostics["n_steps"] == 15
