"""The core's own evaluation pieces: the reference Gaussian, the default AIS transition and
the evaluation box."""

import math

import pytest
import torch

from ebmcore.dataset import Dataset
from ebmcore.evaluation.ais import ais
from ebmcore.evaluation.box import box_from_samples, check_box, evaluation_box
from ebmcore.evaluation.grid import grid_evaluation
from ebmcore.evaluation.reference import ReferenceGaussian
from ebmcore.evaluation.transition import MALATransition


def _full() -> ReferenceGaussian:
    tril = torch.tensor([[1.5, 0.0, 0.0], [0.4, 0.7, 0.0], [-0.3, 0.2, 0.5]],
                        dtype=torch.float64)
    return ReferenceGaussian(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
                             scale_tril=tril)


def _diag() -> ReferenceGaussian:
    return ReferenceGaussian(torch.tensor([0.5, -1.0], dtype=torch.float64),
                             std=torch.tensor([0.3, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("make", [_full, _diag])
def test_log_z_and_energy_match_the_gaussian_density_exactly(make):
    gauss = make()
    cov = gauss.factor() @ gauss.factor().T
    exact = torch.distributions.MultivariateNormal(gauss.mean, covariance_matrix=cov)
    x = torch.randn(50, gauss.dim, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64) * 2
    torch.testing.assert_close(-gauss(x) - gauss.log_z, exact.log_prob(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("make", [_full, _diag])
def test_the_closed_form_gradient_is_autograds(make):
    gauss = make()
    x = torch.randn(20, gauss.dim, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    e, g = gauss.energy_and_grad(x)
    xr = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(gauss(xr).sum(), xr)
    torch.testing.assert_close(g, auto)
    torch.testing.assert_close(e, gauss(x))


@pytest.mark.parametrize("make", [_full, _diag])
def test_samples_have_the_gaussians_moments(make):
    gauss = make()
    n = 200_000
    x = gauss.sample(n, torch.Generator().manual_seed(2))
    cov = gauss.factor() @ gauss.factor().T
    se_mean = cov.diagonal().sqrt() / math.sqrt(n)
    assert bool(((x.mean(0) - gauss.mean).abs() < 5 * se_mean).all())
    # the sample covariance's entries have standard error about sqrt((s_ii s_jj + s_ij²)/n)
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov ** 2) / n).sqrt()
    assert bool(((x.T.cov(correction=0) - cov).abs() < 5 * se_cov).all())


def test_standard_fit_and_shapes():
    std = ReferenceGaussian.standard((1, 2, 2), scale=2.0)
    assert std.event_shape == (1, 2, 2) and std.diagonal
    assert std.log_z == pytest.approx(4 * (0.5 * math.log(2 * math.pi) + math.log(2.0)))
    assert std.sample(3).shape == (3, 1, 2, 2) and std.has_exact_sampler
    torch.testing.assert_close(std.preconditioner(), 2.0 * torch.eye(4))
    data = _full().sample(5000, torch.Generator().manual_seed(3))
    fitted = ReferenceGaussian.fit(data)
    torch.testing.assert_close(fitted.mean, data.mean(0))
    torch.testing.assert_close(fitted.scale_tril @ fitted.scale_tril.T,
                               data.T.cov(correction=0))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not both"):
        ReferenceGaussian([0.0], scale_tril=[[1.0]], std=1.0)
    with pytest.raises(ValueError, match="std must be positive"):
        ReferenceGaussian([0.0, 0.0], std=[1.0, -1.0])
    with pytest.raises(ValueError, match="scale_tril must be"):
        ReferenceGaussian([0.0, 0.0], scale_tril=torch.eye(3))
    with pytest.raises(ValueError, match="more than 2 points"):
        ReferenceGaussian.fit(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="singular"):
        ReferenceGaussian.fit(torch.zeros(10, 2))


@pytest.mark.parametrize("precondition", [False, True])
def test_the_default_transition_leaves_the_target_invariant(precondition):
    gauss = _full()
    kernel = MALATransition(0.3, precondition=precondition)
    gen = torch.Generator().manual_seed(4)
    n = 20_000
    state = kernel.init(gauss, gauss.sample(n, gen))
    accepted = []
    for _ in range(20):
        state, info = kernel.step(gauss, state, gen)
        accepted.append(float(info["accept_prob"].mean()))
    cov = gauss.factor() @ gauss.factor().T
    se_mean = cov.diagonal().sqrt() / math.sqrt(n)
    assert bool(((state.x.mean(0) - gauss.mean).abs() < 6 * se_mean).all())
    assert bool(((state.x.var(0) - cov.diagonal()).abs()
                 < 6 * cov.diagonal() * math.sqrt(2 / n)).all())
    assert 0.3 < sum(accepted) / len(accepted) < 1.0


def test_the_preconditioned_transition_needs_a_preconditioner():
    class Bare(ReferenceGaussian):
        def preconditioner(self):
            return None

    with pytest.raises(ValueError, match="preconditioner"):
        MALATransition(0.1, precondition=True).init(Bare([0.0]), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="step_size"):
        MALATransition(0.0)


def test_ais_runs_with_the_core_alone_and_brackets_an_exact_log_z():
    target = ReferenceGaussian(torch.tensor([1.0, -1.0]), std=torch.tensor([0.5, 0.8]))
    result = ais(target, n_chains=400, n_temps=100, generator=torch.Generator().manual_seed(5))
    assert abs(result.log_z - target.log_z) < 4 * result.stderr + 0.05


class _Boxed(Dataset):
    def sample(self, n, generator=None):
        return torch.zeros(n, 2)

    def log_prob(self, x):
        return torch.where((x.abs() <= 1).all(1), torch.full((x.shape[0],), -math.log(4.0)),
                           torch.full((x.shape[0],), -math.inf))

    @property
    def evaluation_box(self):
        return ((-1.0, 1.0), (-1.0, 1.0))


def test_the_evaluation_box_comes_from_bounds_then_the_data_set_then_samples():
    samples = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    assert evaluation_box(_Boxed(), samples, (-3, 3)) == ((-3.0, 3.0), (-3.0, 3.0))
    assert evaluation_box(_Boxed(), samples) == ((-1.0, 1.0), (-1.0, 1.0))
    assert evaluation_box(Dataset(), samples) == ((-0.5, 2.5), (-1.0, 5.0))
    assert evaluation_box(None, None, default=(-4, 4)) == ((-4.0, 4.0), (-4.0, 4.0))
    with pytest.raises(ValueError, match="no evaluation box"):
        evaluation_box()
    assert box_from_samples(torch.tensor([[1.0], [1.0], [math.nan]])) == ((0.75, 1.25),)
    with pytest.raises(ValueError, match="coordinate 1"):
        check_box([(0, 1), (2, 2)])


def test_grid_evaluation_integrates_over_the_data_sets_box():
    energy = ReferenceGaussian(torch.zeros(2, dtype=torch.float64), std=0.3)
    result = grid_evaluation(energy, _Boxed(), resolution=32)
    assert result.bounds == ((-1.0, 1.0), (-1.0, 1.0))
    assert result.data_mass == pytest.approx(1.0)
