"""Sample metrics: histogram total variation on 2-D sets, Fréchet distances on features."""

from __future__ import annotations

import math

import pytest
import torch

import ebmcore
from ebmcore.dataset import Dataset
from ebmcore.evaluation.images import train_classifier
from ebmcore.evaluation.sample_metrics import (
    classifier_features,
    frechet_distance,
    gaussian_frechet_distance,
    histogram_tv,
    image_frechet,
    streamed_histogram_tv,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: a second thread only spins on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class UnitSquare(Dataset):
    """Uniform on [0, 1]^2: every cell probability is known exactly."""

    def sample(self, n, generator=None):
        return torch.rand(n, 2, generator=generator, dtype=torch.float64)

    def log_prob(self, x):
        inside = ((x >= 0) & (x <= 1)).all(1)
        return torch.where(inside, torch.zeros(x.shape[0], dtype=torch.float64),
                           torch.full((x.shape[0],), -math.inf, dtype=torch.float64))

    @property
    def evaluation_box(self):
        return ((0.0, 1.0), (0.0, 1.0))


# ---------------------------------------------------------------- histogram total variation


def test_samples_confined_to_half_the_square_are_half_a_total_variation_away():
    gen = torch.Generator().manual_seed(0)
    left = torch.rand(200_000, 2, generator=gen, dtype=torch.float64) * torch.tensor([0.5, 1.0])
    result = histogram_tv(left, UnitSquare(), resolution=10)
    # Half of the cells hold twice their mass, half hold none: TV = 1/2 up to sampling noise.
    assert result.tv == pytest.approx(0.5, abs=0.01)
    assert result.floor < 0.02 and result.data_outside == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["eight_gaussians", "checkerboard", "rings"])
def test_exact_samples_sit_at_the_floor_and_a_wrong_model_far_above(name):
    dataset = ebmcore.create("dataset", name)
    exact = dataset.sample(100_000, torch.Generator().manual_seed(3))
    result = histogram_tv(exact, dataset, resolution=50)
    assert 0.85 < result.ratio < 1.15, result  # 0.95 to 1.10 over eight seeds
    assert result.bounds == tuple(tuple(b) for b in dataset.evaluation_box)
    # A 10% wider copy of the data is a bad model: several times the floor.
    assert histogram_tv(1.1 * exact, dataset, resolution=50).ratio > 3


def test_the_floor_falls_as_one_over_the_root_of_the_sample_size():
    dataset = ebmcore.create("dataset", "eight_gaussians")
    floors = [histogram_tv(dataset.sample(n, torch.Generator().manual_seed(1)), dataset,
                           resolution=40).floor for n in (10_000, 160_000)]
    assert floors[0] / floors[1] == pytest.approx(4.0, rel=0.15)


def test_samples_outside_the_box_and_non_finite_ones_count_as_outside_mass():
    square = UnitSquare()
    half = torch.rand(1000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    far = torch.full((600, 2), 7.0, dtype=torch.float64)
    nan = torch.full((400, 2), math.nan, dtype=torch.float64)
    result = histogram_tv(torch.cat([half, far, nan]), square, resolution=4)
    assert result.n_nonfinite == 400 and result.outside == pytest.approx(0.5)
    assert result.tv >= 0.5  # the mass outside is a TV of at least its share
    everything_outside = histogram_tv(far, square, resolution=4)
    assert everything_outside.tv == pytest.approx(1.0)


def test_histogram_tv_names_bad_arguments():
    square = UnitSquare()
    with pytest.raises(ValueError, match="event shape"):
        histogram_tv(torch.zeros(5, 3), square)
    with pytest.raises(TypeError, match="ebmcore.Dataset"):
        histogram_tv(torch.zeros(5, 2), "unit_square")

    class NoDensity(Dataset):
        def sample(self, n, generator=None):
            return torch.zeros(n, 2)

    with pytest.raises(ValueError, match="no log_prob"):
        histogram_tv(torch.zeros(5, 2), NoDensity())
    with pytest.raises(ValueError, match="resolution"):
        histogram_tv(torch.zeros(5, 2), square, resolution=1)


def _drawer(points):
    """``draw(k)`` handing out consecutive rows of ``points``, recording each ``k``."""
    state = {"at": 0, "asked": []}

    def draw(k):
        state["asked"].append(k)
        start = state["at"]
        state["at"] = start + k
        return points[start:start + k]

    return draw, state


def test_streamed_tv_matches_one_histogram_of_the_same_samples_whatever_the_batches():
    dataset = ebmcore.create("dataset", "rings")
    samples = 1.05 * dataset.sample(30_000, torch.Generator().manual_seed(4))
    whole = histogram_tv(samples, dataset, resolution=40,
                         generator=torch.Generator().manual_seed(9))
    draw, state = _drawer(samples)
    streamed = streamed_histogram_tv(draw, dataset, n=30_000, chunk=7_000, resolution=40,
                                     generator=torch.Generator().manual_seed(9))
    # The model's histogram is the same counts, batch by batch; memory holds one batch.
    assert streamed.tv == pytest.approx(whole.tv, abs=1e-12)
    assert streamed.outside == pytest.approx(whole.outside, abs=1e-12)
    assert state["asked"] == [7_000] * 4 + [2_000]
    # The floor's data come in batches too: another draw of the same size, so a floor of
    # the same size within sampling noise, and far below the TV
    # of the 5 % wider copy.
    assert streamed.floor == pytest.approx(whole.floor, rel=0.15)
    assert streamed.ratio > 2


def test_streamed_tv_of_exact_samples_sits_at_its_floor():
    dataset = ebmcore.create("dataset", "eight_gaussians")
    gen = torch.Generator().manual_seed(2)
    result = streamed_histogram_tv(lambda k: dataset.sample(k, gen), dataset, n=200_000,
                                   chunk=50_000, resolution=50)
    assert 0.9 < result.ratio < 1.1, result
    assert result.n_samples == 200_000 and result.n_nonfinite == 0


def test_streamed_tv_names_bad_draws_and_arguments():
    square = UnitSquare()
    with pytest.raises(ValueError, match=r"draw must return a tensor of shape \(10, 2\)"):
        streamed_histogram_tv(lambda k: torch.zeros(k, 3), square, n=10)
    with pytest.raises(TypeError, match="draw must be a callable"):
        streamed_histogram_tv(torch.zeros(10, 2), square, n=10)
    with pytest.raises(ValueError, match="chunk"):
        streamed_histogram_tv(lambda k: torch.zeros(k, 2), square, n=10, chunk=0)
    nan = streamed_histogram_tv(lambda k: torch.full((k, 2), math.nan), square, n=10)
    assert nan.n_nonfinite == 10 and nan.tv == pytest.approx(1.0)


# ---------------------------------------------------------------- Fréchet distance


def test_identical_gaussians_are_at_distance_zero():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64, generator=gen)
    cov, mean = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), torch.randn(6, generator=gen)
    assert gaussian_frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_gaussians_match_the_closed_form():
    """For commuting covariances the distance is |dm|^2 + sum (s_a - s_b)^2."""
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, -1.0, 2.5])
    s_a, s_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.5, 2.0, 1.5])
    expected = float((mean_a - mean_b).square().sum() + (s_a - s_b).square().sum())
    got = gaussian_frechet_distance(mean_a, torch.diag(s_a ** 2), mean_b, torch.diag(s_b ** 2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_non_commuting_covariances_match_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.randn(5, 5, dtype=torch.float64, generator=gen) for _ in range(2))
    cov_a, cov_b = a @ a.T, b @ b.T
    root = linalg.sqrtm(cov_a.numpy() @ cov_b.numpy()).real
    expected = float(torch.trace(cov_a) + torch.trace(cov_b)) - 2 * float(root.trace())
    zero = torch.zeros(5, dtype=torch.float64)
    assert gaussian_frechet_distance(zero, cov_a, zero, cov_b) == pytest.approx(expected,
                                                                                 rel=1e-8)


def test_samples_of_shifted_gaussians_give_the_squared_shift():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(50_000, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(50_000, 4, dtype=torch.float64, generator=gen)
    shift = torch.tensor([1.0, -0.5, 0.0, 2.0], dtype=torch.float64)
    assert frechet_distance(a, b) < 0.002  # same law: only the estimate's small bias
    # A shifted copy has the same covariance: exactly the squared shift.
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.square().sum()),
                                                           rel=1e-9)
    # Independent draws: the sample means' error moves it by 2 shift.dm, sd about 0.03.
    assert frechet_distance(a, b + shift) == pytest.approx(float(shift.square().sum()),
                                                           abs=0.1)


def test_frechet_distance_names_bad_arguments():
    with pytest.raises(ValueError, match="same number of features"):
        frechet_distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.zeros(1, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="non-finite"):
        gaussian_frechet_distance(torch.zeros(2), torch.eye(2), torch.full((2,), math.nan),
                                  torch.eye(2))
    with pytest.raises(ValueError, match="covariances"):
        gaussian_frechet_distance(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).div(16.0).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * x.shape[0])
    train, held_out = x[order[:cut]], x[order[cut:]]
    classifier = train_classifier(train, y[order[:cut]], 10, epochs=5)
    return classifier, train, held_out


def test_held_out_images_as_samples_sit_at_the_reference(digits):
    classifier, train, held_out = digits
    result = image_frechet(classifier, held_out, train, held_out)
    assert result.ratio == pytest.approx(1.0) and result.reference > 0
    assert (result.n_samples, result.n_reference, result.features) == (360, 360, 256)


def test_noise_and_non_finite_samples_are_far_and_counted(digits):
    classifier, train, held_out = digits
    noise = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    noise[:5] = math.nan
    result = image_frechet(classifier, noise, train, held_out)
    assert result.ratio > 5 and result.n_nonfinite == 5 and result.n_samples == 360
    everything = image_frechet(classifier, noise, train, held_out, match_sizes=False)
    assert everything.n_samples == 395


def test_features_need_the_report_classifier(digits):
    classifier, train, _ = digits
    assert classifier_features(classifier, train[:7]).shape == (7, 256)
    with pytest.raises(TypeError, match="ImageClassifier"):
        classifier_features(torch.nn.Flatten(), train[:7])
    with pytest.raises(ValueError, match="at least 2 finite"):
        image_frechet(classifier, torch.full((3, 1, 8, 8), math.nan), train, train[:10])
