"""Image-model yardsticks against known answers: bits per dimension by hand, exact Gaussian
and mixture likelihoods, a digits classifier, and class coverage on a stub classifier."""

import math
import sys

import pytest
import torch

from ebmcore.evaluation.images import (
    Baseline,
    Coverage,
    bits_per_dim,
    class_coverage,
    classifier_accuracy,
    gaussian_baseline,
    mixture_baseline,
    train_classifier,
)

# ---------------------------------------------------------------- bits per dimension


def test_uniform_density_on_unit_cube_is_eight_bits_at_256_levels():
    assert bits_per_dim(0.0, 784, 1 / 256) == pytest.approx(8.0, abs=1e-12)


def test_bits_per_dim_hand_computation():
    # -(ll + D log w) / (D ln 2) with ll = 100 nats, D = 64, w = 1/17
    expected = -(100.0 + 64 * math.log(1 / 17)) / (64 * math.log(2))
    assert bits_per_dim(100.0, 64, 1 / 17) == pytest.approx(expected, rel=1e-12)
    # a density twice as high per dimension saves exactly one bit per dimension
    assert bits_per_dim(10 * math.log(2), 10, 1 / 256) == pytest.approx(7.0, abs=1e-12)


@pytest.mark.parametrize(("args", "error", "match"), [
    ((0.0, 0, 0.5), ValueError, "dim"),
    ((0.0, 2.0, 0.5), TypeError, "dim"),
    ((0.0, 4, 0.0), ValueError, "bin_width"),
    ((math.nan, 4, 0.5), ValueError, "log_likelihood"),
    (("1", 4, 0.5), TypeError, "log_likelihood"),
])
def test_bits_per_dim_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        bits_per_dim(*args)


# ---------------------------------------------------------------- exact baselines


@pytest.fixture(scope="module")
def gaussian_truth():
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    cov = a @ a.T + 0.5 * torch.eye(3, dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(mean, cov)
    chol = torch.linalg.cholesky(cov)

    def draw(n):
        return mean + torch.randn(n, 3, generator=g, dtype=torch.float64) @ chol.T

    return dist, draw


def test_gaussian_baseline_recovers_the_true_mean_log_density(gaussian_truth):
    dist, draw = gaussian_truth
    train, test = draw(5000).reshape(-1, 1, 3), draw(4000).reshape(-1, 1, 3)
    result = gaussian_baseline(train, test)
    assert isinstance(result, Baseline) and result.name == "gaussian"
    truth = -float(dist.entropy())  # E log p(x) under p
    assert abs(result.log_likelihood - truth) < 4 * result.stderr
    assert result.stderr == pytest.approx(
        float(result.per_image.std() / math.sqrt(4000)), rel=1e-12)
    assert result.to_dict() == {"name": "gaussian", "log_likelihood": result.log_likelihood,
                                "stderr": result.stderr}


def test_gaussian_baseline_per_image_is_the_ml_gaussian_log_density(gaussian_truth):
    _, draw = gaussian_truth
    train, test = draw(20).float(), draw(7).float()  # few points: 1/N vs 1/(N-1) shows
    x = train.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / x.shape[0]
    expected = torch.distributions.MultivariateNormal(mean, cov).log_prob(test.double())
    result = gaussian_baseline(train, test)
    assert result.per_image.dtype == torch.float64 and result.per_image.shape == (7,)
    torch.testing.assert_close(result.per_image, expected, rtol=1e-10, atol=1e-10)
    assert result.log_likelihood == pytest.approx(float(expected.mean()), rel=1e-12)


def test_gaussian_baseline_rejects_a_singular_covariance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 3, generator=g, dtype=torch.float64)
    duplicated = torch.cat([x, x[:, :1]], 1)  # a pixel that copies another
    with pytest.raises(ValueError, match="singular"):
        gaussian_baseline(duplicated, duplicated)
    constant = x.clone()
    constant[:, 2] = 0.25
    with pytest.raises(ValueError, match="singular"):
        gaussian_baseline(constant, x)
    with pytest.raises(ValueError, match="singular.*3 training images for 5 dimensions"):
        gaussian_baseline(torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g))


@pytest.mark.parametrize(("train", "test", "match"), [
    (torch.zeros(10, 3), torch.zeros(5, 4), "event shape"),
    (torch.zeros(1, 3), torch.zeros(5, 3), "train must hold at least 2"),
    (torch.zeros(10, 3), torch.zeros(1, 3), "test must hold at least 2"),
    (torch.zeros(10), torch.zeros(5, 3), "train must be a batch"),
    (torch.zeros(10, 3), torch.full((5, 3), math.nan), "test contains non-finite"),
])
def test_baselines_validate_their_inputs(train, test, match):
    with pytest.raises(ValueError, match=match):
        gaussian_baseline(train, test)
    with pytest.raises(ValueError, match=match):
        mixture_baseline(train, test, n_components=1)


@pytest.fixture(scope="module")
def two_blobs():
    g = torch.Generator().manual_seed(2)

    def draw(n):
        side = torch.randint(0, 2, (n, 1), generator=g).double() * 2 - 1
        return torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.5 + 6.0 * side * \
            torch.tensor([1.0, 0.0], dtype=torch.float64)

    return draw(600), draw(400)


def test_mixture_beats_a_gaussian_on_two_separated_blobs(two_blobs):
    train, test = two_blobs
    mixture = mixture_baseline(train, test, n_components=2)
    gaussian = gaussian_baseline(train, test)
    assert mixture.name == "mixture(2)"
    # One Gaussian spreads its mass over the empty middle; the mixture does not.
    assert mixture.log_likelihood > gaussian.log_likelihood + 1.0
    # the truth, 0.5 N(±6, 0.25 I) per blob, is -log 2 - log(2 pi 0.25) - 1 = -2.145
    assert mixture.log_likelihood == pytest.approx(-2.145, abs=0.15)


def test_mixture_matches_sklearn_score_samples(two_blobs):
    from sklearn.mixture import GaussianMixture

    train, test = two_blobs
    result = mixture_baseline(train.reshape(-1, 1, 2), test.reshape(-1, 1, 2),
                              n_components=3, seed=5)
    model = GaussianMixture(3, covariance_type="full", random_state=5, reg_covar=1e-6)
    expected = torch.from_numpy(model.fit(train.numpy()).score_samples(test.numpy()))
    torch.testing.assert_close(result.per_image, expected, rtol=1e-12, atol=1e-12)


def test_mixture_baseline_names_the_extra_when_sklearn_is_missing(monkeypatch, two_blobs):
    monkeypatch.setitem(sys.modules, "sklearn.mixture", None)
    with pytest.raises(ImportError, match=r'pip install "ebmcore\[images\]"'):
        mixture_baseline(*two_blobs, n_components=2)


def test_mixture_baseline_validates_n_components(two_blobs):
    train, test = two_blobs
    with pytest.raises(ValueError, match="n_components"):
        mixture_baseline(train, test, n_components=0)
    with pytest.raises(ValueError, match="n_components = 700"):
        mixture_baseline(train, test, n_components=700)


# ---------------------------------------------------------------- digits classifier


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).div(16.0).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.long)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * x.shape[0])  # 1,437 to train, 360 held out
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    state = torch.get_rng_state()
    model = train_classifier(x, y, 10)
    return model, state, torch.get_rng_state()


def test_classifier_learns_digits(digits, trained):
    _, _, x_test, y_test = digits
    model, _, _ = trained
    assert not model.training
    assert classifier_accuracy(model, x_test, y_test) > 0.9


def test_classifier_leaves_the_global_rng_alone(trained):
    _, before, after = trained
    assert torch.equal(before, after)


def test_classifier_is_deterministic_given_its_seed(digits):
    x, y, _, _ = digits
    torch.manual_seed(123)  # the global stream must not matter
    a = train_classifier(x[:300], y[:300], 10, epochs=2, seed=7)
    torch.manual_seed(456)
    b = train_classifier(x[:300], y[:300], 10, epochs=2, seed=7)
    c = train_classifier(x[:300], y[:300], 10, epochs=2, seed=8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["net.1.weight"], c.state_dict()["net.1.weight"])


def test_classifier_accuracy_counts_argmax_hits():
    model = Lookup(torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]))
    images = torch.tensor([[0.0], [1.0], [2.0], [1.0]])
    assert classifier_accuracy(model, images, torch.tensor([0, 1, 1, 0])) == 0.5


@pytest.mark.parametrize(("labels", "n_classes", "error", "match"), [
    (torch.zeros(5, dtype=torch.long), 10, ValueError, r"labels must have shape \(6,\)"),
    (torch.zeros(6), 10, TypeError, "labels must have an integer dtype"),
    (torch.tensor([0, 1, 2, 3, 4, 10]), 10, ValueError, r"labels must lie in \[0, 10\)"),
    (torch.tensor([0, 1, 2, 3, 4, -1]), 10, ValueError, "non-negative"),
    (torch.zeros(6, dtype=torch.long), 1, ValueError, "n_classes"),
])
def test_train_classifier_validates_labels(labels, n_classes, error, match):
    with pytest.raises(error, match=match):
        train_classifier(torch.zeros(6, 1, 2, 2), labels, n_classes, epochs=1)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"),
    ({"seed": -1}, "seed"),
])
def test_train_classifier_validates_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_classifier(torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long), 2,
                         **kwargs)


def test_classifier_rejects_images_of_another_shape(digits, trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match=r"classifier expects \(1, 8, 8\)"):
        class_coverage(model, torch.zeros(4, 1, 28, 28), 10)


# ---------------------------------------------------------------- class coverage


class Lookup(torch.nn.Module):
    """A stub classifier: the first value of each sample picks a row of fixed logits."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert bool(torch.isfinite(x).all()), "non-finite samples must not reach the model"
        return self.table[x.flatten(1)[:, 0].long()]


TABLE = torch.tensor([[20.0, 0.0, 0.0],   # 0: class 0, confident
                      [0.0, 0.0, 20.0],   # 1: class 2, confident
                      [0.0, 0.0, 0.0],    # 2: 1/3 each, not confident
                      [0.0, 1.0, 0.0]])   # 3: class 1 at 0.58, confident only below that


def test_class_coverage_on_a_stub_gives_known_counts():
    samples = torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0, math.nan, math.inf, 0.0]).reshape(-1, 1)
    result = class_coverage(Lookup(TABLE), samples, 3)
    assert isinstance(result, Coverage)
    assert result.counts == [3, 0, 1]
    assert result.confident_share == pytest.approx(4 / 8)
    assert result.shares == pytest.approx([0.75, 0.0, 0.25])
    assert result.classes_covered == 2
    assert result.max_share == pytest.approx(0.75)
    assert result.n_nonfinite == 2
    assert result.threshold == 0.9
    assert result.to_dict() == {
        "threshold": 0.9, "confident_share": 0.5, "counts": [3, 0, 1],
        "shares": result.shares, "classes_covered": 2, "max_share": result.max_share,
        "n_nonfinite": 2}


def test_class_coverage_threshold_moves_the_line():
    samples = torch.tensor([[0.0], [3.0], [3.0], [2.0]])
    # row 3 gives class 1 probability e / (e + 2) = 0.576
    low = class_coverage(Lookup(TABLE), samples, 3, threshold=0.5)
    assert low.counts == [1, 2, 0] and low.classes_covered == 2
    assert low.max_share == pytest.approx(2 / 3)
    high = class_coverage(Lookup(TABLE), samples, 3, threshold=0.6)
    assert high.counts == [1, 0, 0] and high.max_share == 1.0


def test_class_coverage_with_nothing_confident():
    samples = torch.tensor([[2.0], [2.0], [math.nan]])
    result = class_coverage(Lookup(TABLE), samples, 3)
    assert result.counts == [0, 0, 0] and result.shares == [0.0, 0.0, 0.0]
    assert result.classes_covered == 0 and result.max_share == 0.0
    assert result.confident_share == 0.0 and result.n_nonfinite == 1
    every_row_bad = class_coverage(Lookup(TABLE), torch.full((2, 1), math.nan), 3)
    assert every_row_bad.n_nonfinite == 2 and every_row_bad.confident_share == 0.0


@pytest.mark.parametrize(("threshold", "error"), [
    (0.0, ValueError), (1.0, ValueError), (1.5, ValueError), (-0.1, ValueError),
    (math.nan, ValueError), (True, TypeError), ("0.9", TypeError),
])
def test_class_coverage_validates_threshold(threshold, error):
    with pytest.raises(error, match="threshold"):
        class_coverage(Lookup(TABLE), torch.zeros(2, 1), 3, threshold=threshold)


def test_class_coverage_checks_the_classifier_output_width():
    with pytest.raises(ValueError, match=r"logits of shape \(2, 4\)"):
        class_coverage(Lookup(TABLE), torch.zeros(2, 1), 4)
    with pytest.raises(ValueError, match="samples must be a batch"):
        class_coverage(Lookup(TABLE), torch.zeros(2), 3)
    with pytest.raises(ValueError, match="n_classes"):
        class_coverage(Lookup(TABLE), torch.zeros(2, 1), 0)
