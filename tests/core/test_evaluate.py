"""Evaluation: grid quadrature, the AIS bracket of log Z, MMD and KSD tests."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ebmcore
from ebmcore.dataset import Dataset
from ebmcore.energy import Energy
from ebmcore.evaluate import (
    ais,
    grid_evaluation,
    ksd,
    make_grid,
    mmd,
    reverse_ais,
    schedule,
    stein_kernel_matrix,
)


class IsoGaussianData(Dataset):
    """A data-set stand-in: N(mean, s² I) in 2-D with an exact log_prob."""

    def __init__(self, mean, std):
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.std = std

    def sample(self, n, generator=None):
        return self.mean + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def log_prob(self, x):
        z = (x.double() - self.mean) / self.std
        return -0.5 * z.pow(2).sum(1) - 2 * math.log(self.std) - math.log(2 * math.pi)


def _gaussian(mean, var):
    return ebmcore.create("energy", "gaussian", mean=mean, cov=[[var, 0.0], [0.0, var]])


def test_grid_evaluation_matches_closed_forms():
    std, shift = 0.7, 0.3
    data = IsoGaussianData([0.0, 0.0], std)
    model = _gaussian([shift, 0.0], std**2)
    test_x = data.sample(1000, torch.Generator().manual_seed(0))
    ev = grid_evaluation(model, data, test_x, bounds=(-6.0, 6.0), resolution=200)
    # The energy evaluates in its own dtype (float32 here): agreement to float32 rounding.
    assert ev.log_z == pytest.approx(model.log_z, abs=1e-6)
    exact_nll = float((model(test_x) + model.log_z).mean())
    assert ev.nll == pytest.approx(exact_nll, abs=1e-6)
    assert ev.data_nll == pytest.approx(-float(data.log_prob(test_x).mean()), abs=1e-12)
    assert ev.nll_gap == pytest.approx(ev.nll - ev.data_nll)
    assert ev.kl == pytest.approx(0.5 * shift**2 / std**2, abs=1e-6)  # equal covariances
    delta = shift / std  # TV of two Gaussians differing by a shift: 2Φ(δ/2) - 1
    # |p - q| has a kink where p = q, so the midpoint rule is only first-order there.
    assert ev.tv == pytest.approx(math.erf(delta / (2 * math.sqrt(2))), abs=1e-3)
    assert ev.data_mass == pytest.approx(1.0, abs=1e-8)
    perfect = grid_evaluation(_gaussian([0.0, 0.0], std**2), data, test_x, bounds=(-6, 6))
    assert perfect.kl == pytest.approx(0.0, abs=1e-6) and perfect.tv < 1e-5


def test_grid_evaluation_of_a_neural_energy_and_without_extras():
    torch.manual_seed(0)
    model = ebmcore.create("model", "mlp", dim=2, hidden=(8,))
    ev = grid_evaluation(model, "eight_gaussians", bounds=((-5, 5), (-4, 4)), resolution=64)
    assert math.isfinite(ev.kl) and 0 <= ev.tv <= 1 and ev.nll is None
    alone = grid_evaluation(model, None, torch.zeros(3, 2), bounds=(-5, 5), resolution=64)
    assert alone.kl is None and alone.nll == pytest.approx(
        float(model(torch.zeros(3, 2)).detach().mean()) + alone.log_z, abs=1e-5)
    assert model.training  # the mode is restored


def test_make_grid_midpoints():
    points, area = make_grid(((0, 1), (0, 2)), 2)
    assert area == pytest.approx(0.5)
    assert points.tolist() == [[0.25, 0.5], [0.25, 1.5], [0.75, 0.5], [0.75, 1.5]]


def test_grid_evaluation_rejects_bad_input():
    model = _gaussian([0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="bounds"):
        grid_evaluation(model, bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="bounds"):
        grid_evaluation(model, bounds="wide")
    with pytest.raises(ValueError, match="2-D energy"):
        grid_evaluation(ebmcore.create("energy", "gaussian", mean=[0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="log_prob"):
        grid_evaluation(model, Dataset())
    with pytest.raises(ValueError, match="resolution"):
        grid_evaluation(model, resolution=1)
    with pytest.raises(ValueError, match="n_rings"):
        grid_evaluation(model, n_rings=0)
    with pytest.raises(ValueError, match="ring_resolution"):
        grid_evaluation(model, ring_resolution=1)
    with pytest.raises(ValueError, match="mass_tolerance"):
        grid_evaluation(model, mass_tolerance=0.0)


def test_grid_evaluation_counts_the_mass_outside_the_box():
    """A standard normal on (-2, 2): the rings find the outside mass and the whole-plane log Z."""
    ev = grid_evaluation(_gaussian([0.0, 0.0], 1.0), bounds=(-2.0, 2.0), resolution=128)
    outside = 1 - math.erf(2 / math.sqrt(2)) ** 2  # about 0.089
    assert ev.normalisable and ev.status == "normalisable" and ev.far_field.rises
    # Midpoint rule with cells of 0.031 (box) and 0.063 (first ring): the error is O(h²),
    # measured at about 6e-5; 2e-4 leaves room without hiding a missing ring (0.089).
    assert ev.outside_mass == pytest.approx(outside, abs=2e-4)
    assert ev.log_z == pytest.approx(math.log(2 * math.pi), abs=2e-4)
    assert ev.log_z_box == pytest.approx(math.log(2 * math.pi) + math.log(1 - outside), abs=2e-4)
    assert ev.outside_mass == pytest.approx(sum(ev.ring_masses), rel=1e-12)
    # Beyond (-6, 6) the mass is 1 - erf(6/√2)² ≈ 4e-9; the quadrature gets it within 10%.
    assert ev.outside_mass_3x == pytest.approx(1 - math.erf(6 / math.sqrt(2)) ** 2, rel=0.1)
    assert ev.ring_half_widths == [3.0, 9.0, 27.0, 81.0] and len(ev.ring_masses) == 4
    assert ev.ring_masses[-1] < 1e-6


class _FallingRidge(Energy):
    """A unit Gaussian bump joined (log-sum-exp) to a ridge along +x₀ on which E falls linearly.

    ``E = -log(exp(-|x|²/2) + exp(x₀ - 8 - x₁²/2))`` is finite everywhere, but along +x₀ it
    is ``8 - x₀`` far away, so ``exp(-E)`` is not integrable.
    """

    event_shape = (2,)

    def forward(self, x):
        bump = -0.5 * x.pow(2).sum(1)
        ridge = x[:, 0] - 8.0 - 0.5 * x[:, 1].pow(2)
        return -torch.logaddexp(bump, ridge)


def test_grid_evaluation_of_an_energy_that_falls_far_away_is_not_normalisable():
    """An energy that falls along one ray gets no NLL, KL or TV, but keeps the data figures."""
    data = IsoGaussianData([0.0, 0.0], 1.0)
    test_x = data.sample(200, torch.Generator().manual_seed(0))
    ev = grid_evaluation(_FallingRidge(), data, test_x, bounds=(-4.0, 4.0), resolution=64)
    assert not ev.normalisable and ev.status.startswith("not normalisable")
    assert "slope" in ev.status and not ev.far_field.rises
    assert ev.nll is None and ev.nll_gap is None and ev.kl is None and ev.tv is None
    assert ev.log_z is None
    assert ev.data_nll == pytest.approx(-float(data.log_prob(test_x).mean()), abs=1e-12)
    assert math.isfinite(ev.log_z_box) and ev.data_mass == pytest.approx(1.0, abs=1e-3)
    assert ev.outside_mass > 0.99  # the ridge's mass, out to 81 times the box, dominates


def test_grid_evaluation_of_an_energy_that_is_nan_far_away_is_not_normalisable():
    """NaN energies in the first ring make the evaluation say so instead of failing."""
    class NanOutside(Energy):
        event_shape = (2,)

        def forward(self, x):
            r2 = x.pow(2).sum(1)
            return torch.where(r2 > 100.0, torch.full_like(r2, math.nan), r2)

    ev = grid_evaluation(NanOutside(), bounds=(-4.0, 4.0), resolution=16)
    assert not ev.normalisable and "NaN" in ev.status and ev.log_z is None


def test_grid_evaluation_flags_mass_beyond_the_outermost_ring():
    """A Gaussian of std 100 rises far away, but 4 rings of (-4, 4) reach only 3.2 std."""
    ev = grid_evaluation(_gaussian([0.0, 0.0], 1e4), bounds=(-4.0, 4.0), resolution=32)
    assert ev.far_field.rises
    assert not ev.normalisable and "not resolved" in ev.status and ev.log_z is None
    assert ev.ring_masses[-1] > 0.1  # about 0.48 lies between 27 and 81 times the box


def test_kl_and_tv_count_the_mass_the_model_puts_outside_the_box():
    """A model wider than the data leaks mass outside the box; KL and TV include it."""
    sp, sq = 0.5, 2.0
    data, model = IsoGaussianData([0.0, 0.0], sp), _gaussian([0.0, 0.0], sq**2)
    ev = grid_evaluation(model, data, bounds=(-4.0, 4.0), resolution=128)
    assert ev.normalisable and ev.outside_mass > 0.08
    # Closed forms over the whole plane. KL of isotropic 2-D Gaussians; TV from the radius r*
    # where the densities cross (|x|² is σ² χ²₂, so P(|x| < r) = 1 - exp(-r²/2σ²)).
    kl = 2 * (math.log(sq / sp) + sp**2 / (2 * sq**2) - 0.5)
    r2 = 4 * math.log(sq / sp) / (1 / sp**2 - 1 / sq**2)
    tv = math.exp(-r2 / (2 * sq**2)) - math.exp(-r2 / (2 * sp**2))
    # Quadrature error O(h²), measured at 5e-5 for KL and 2e-5 for TV at this resolution.
    assert ev.kl == pytest.approx(kl, abs=2e-4)
    assert ev.tv == pytest.approx(tv, abs=2e-4)
    # The box-only figures (the model renormalised to the box) understate both.
    points, area = make_grid((-4.0, 4.0), 128)
    log_p = data.log_prob(points)
    log_p = log_p - (torch.logsumexp(log_p, 0) + math.log(area))
    log_q = -model(points).double()
    log_q = log_q - (torch.logsumexp(log_q, 0) + math.log(area))
    kl_box = float((log_p.exp() * (log_p - log_q)).sum()) * area
    tv_box = 0.5 * float((log_p.exp() - log_q.exp()).abs().sum()) * area
    assert kl_box == pytest.approx(ev.kl + math.log(1 - ev.outside_mass), abs=1e-9)  # identity
    assert ev.kl - kl_box > 0.09 and ev.tv - tv_box > 0.01  # about 0.093 and 0.016


def test_grid_evaluation_to_dict_is_json():
    """to_dict gives plain, strictly JSON-serialisable values, normalisable or not."""
    data = IsoGaussianData([0.0, 0.0], 1.0)
    test_x = data.sample(20, torch.Generator().manual_seed(0))
    for energy in (_gaussian([0.0, 0.0], 1.0), _FallingRidge()):
        ev = grid_evaluation(energy, data, test_x, bounds=(-4.0, 4.0), resolution=16)
        d = ev.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = json.loads(text)
        assert back["status"] == ev.status and back["normalisable"] == ev.normalisable
        assert back["far_field"]["rises"] == ev.far_field.rises
        assert back["ring_masses"] == ev.ring_masses and back["log_z"] == ev.log_z


def _target():
    return ebmcore.create("energy", "gaussian", mean=[1.0, -0.5], cov=[[0.5, 0.2], [0.2, 0.3]])


def test_ais_brackets_the_true_log_z():
    target = _target()
    base = _gaussian([0.0, 0.0], 2.0)
    g = torch.Generator().manual_seed(0)
    lower = ais(target, base, n_chains=500, n_temps=40, generator=g)
    upper = reverse_ais(target, target.sample(500, generator=g), base, n_temps=40, generator=g)
    true = target.log_z
    assert lower.bound == "lower" and upper.bound == "upper"
    assert lower.log_z <= true + 3 * lower.stderr
    assert upper.log_z >= true - 3 * upper.stderr
    assert lower.log_z < upper.log_z
    for r in (lower, upper):
        assert 1 < r.ess <= 500 and r.log_weights.shape == (500,)
        assert 0.5 < r.acceptance <= 1.0
    # With a long schedule the forward estimate is consistent within its standard error.
    fine = ais(target, base, n_chains=500, n_temps=300, generator=g)
    assert abs(fine.log_z - true) < 5 * fine.stderr
    assert fine.samples.shape == (500, 2)


def test_ais_with_base_equal_to_target_is_exact():
    target = _target()
    r = ais(target, target, n_chains=50, n_temps=5, generator=torch.Generator().manual_seed(1))
    assert r.log_z == pytest.approx(target.log_z, abs=1e-10)
    assert r.ess == pytest.approx(50) and r.stderr == pytest.approx(0.0, abs=1e-12)


def test_ais_default_base_and_reproducibility():
    target = _target()
    a = ais(target, n_chains=20, n_temps=5, generator=torch.Generator().manual_seed(2))
    b = ais(target, n_chains=20, n_temps=5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.log_weights, b.log_weights)


def test_schedules():
    for kind in ("sigmoid", "linear"):
        betas = schedule(11, kind)
        assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    with pytest.raises(ValueError, match="schedule"):
        schedule(5, "cosine")
    with pytest.raises(ValueError, match="rise strictly"):
        ais(_target(), n_chains=4, schedule_kind=[0.0, 0.7, 0.5, 1.0])


def test_ais_rejects_bad_bases():
    model = ebmcore.create("model", "mlp", dim=2, hidden=(4,))
    with pytest.raises(ValueError, match="log_z"):
        ais(_target(), model)
    with pytest.raises(ValueError, match="at least 2"):
        reverse_ais(_target(), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="sampler"):
        ais(_target(), sampler=4)


def test_mmd_same_versus_shifted():
    g = torch.Generator().manual_seed(0)
    target = _target()
    x, y = target.sample(300, generator=g), target.sample(300, generator=g)
    same = mmd(x, y, n_permutations=300, generator=g)
    shifted = mmd(x, y + 0.4, n_permutations=300, generator=g)
    assert same.p_value > 0.05
    assert shifted.p_value < 0.01 and shifted.statistic > same.statistic
    assert same.bandwidth > 0
    with pytest.raises(ValueError, match="event shape"):
        mmd(x, torch.zeros(5, 3))


def test_mmd_statistic_is_the_unbiased_estimate():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 2, generator=g), torch.randn(5, 2, generator=g) + 1

    def k(a, b):
        return torch.exp(-(a - b).pow(2).sum() / 2.0)

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    got = mmd(x, y, bandwidth=1.0, n_permutations=10, generator=g)
    assert got.statistic == pytest.approx(float(xx + yy - 2 * xy), abs=1e-6)


def test_ksd_same_versus_shifted():
    g = torch.Generator().manual_seed(0)
    target = _target()
    x = target.sample(300, generator=g)
    same = ksd(x, target, generator=g)
    shifted = ksd(x + 0.3, target, generator=g)
    assert same.p_value > 0.05
    assert shifted.p_value < 0.01 and shifted.statistic > same.statistic
    se = (same.statistic - 0) if same.statistic > 0 else 0.0
    assert se < shifted.statistic


def test_stein_kernel_matches_autograd():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    score = torch.randn(4, 3, generator=g, dtype=torch.float64)
    c, beta = 1.3, -0.5
    u = stein_kernel_matrix(x, score, c, beta)

    def k(a, b):
        return (c * c + (a - b).pow(2).sum()).pow(beta)

    for i in range(4):
        for j in range(4):
            a = x[i].clone().requires_grad_(True)
            b = x[j].clone().requires_grad_(True)
            value = k(a, b)
            ga, gb = torch.autograd.grad(value, (a, b), create_graph=True)
            trace = sum(torch.autograd.grad(ga[d], b, retain_graph=True)[0][d] for d in range(3))
            want = (score[i] @ score[j]) * value + score[i] @ gb + score[j] @ ga + trace
            assert float(u[i, j]) == pytest.approx(float(want.detach()), rel=1e-10, abs=1e-12)


def test_ksd_rejects_bad_arguments():
    with pytest.raises(ValueError, match="beta"):
        ksd(torch.zeros(5, 2), _target(), beta=0.5)
    with pytest.raises(ValueError, match="at least 2"):
        ksd(torch.zeros(1, 2), _target())
