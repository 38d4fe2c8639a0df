"""Yardsticks for image models: bits per dimension, exact-likelihood baselines, and a
classifier that says which classes a model's samples cover.

- :func:`bits_per_dim` turns a continuous log-likelihood of dequantised images into bits per
  dimension of the discrete images (a bound, as is usual for dequantised data).
- :func:`gaussian_baseline` and :func:`mixture_baseline` fit models whose test likelihood is
  exact, so an energy-based model's AIS estimate has something honest to beat.
- :func:`train_classifier`, :func:`classifier_accuracy` and :func:`class_coverage` check
  whether samples look like the classes of the data and whether they cover all of them
  (mode collapse shows as few classes covered or one class taking most samples).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

import torch

from ebmcore.evaluation._model import eval_mode, placement
from ebmcore.validation import check_int, check_points, check_positive

# Batches pushed through a classifier at once when judging; keeps memory flat for big sets.
_EVAL_CHUNK = 4096


def bits_per_dim(log_likelihood: float, dim: int, bin_width: float) -> float:
    """Bits per dimension of discrete images from a continuous log-likelihood.

    For an image dequantised with uniform noise on a scale where one intensity bin has
    width ``bin_width``, ``log P(bin) >= E_u log p(x + u) + dim * log(bin_width)``, so

    ``bpd = -(log_likelihood + dim * log(bin_width)) / (dim * ln 2)``

    is an upper bound on the discrete model's bits per dimension. For example a uniform
    density on ``[0, 1]^D`` (log-likelihood 0) with ``bin_width = 1/256`` gives 8 bits.

    Args:
        log_likelihood: Mean continuous log-likelihood, nats per image.
        dim: Number of dimensions per image (``C * H * W``).
        bin_width: Width of one intensity bin on the scale the density lives on
            (``1/256`` for 8-bit data scaled to ``[0, 1]``).
    """
    if isinstance(log_likelihood, bool) or not isinstance(log_likelihood, Real):
        raise TypeError(f"log_likelihood must be a number, got {type(log_likelihood).__name__}")
    if not math.isfinite(float(log_likelihood)):
        raise ValueError(f"log_likelihood must be finite, got {log_likelihood!r}")
    check_int("dim", dim, minimum=1)
    bin_width = check_positive("bin_width", bin_width)
    return -(float(log_likelihood) + dim * math.log(bin_width)) / (dim * math.log(2.0))


@dataclass
class Baseline:
    """An exact-likelihood baseline's score on test images.

    Attributes:
        name: ``"gaussian"`` or ``"mixture(K)"``.
        log_likelihood: Mean exact test log-likelihood, nats per image.
        stderr: Standard error of that mean over test images.
        per_image: Each test image's log-likelihood ``(N,)``, float64 on the CPU.
    """

    name: str
    log_likelihood: float
    stderr: float
    per_image: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-friendly values (``per_image`` left out)."""
        return {"name": self.name, "log_likelihood": self.log_likelihood,
                "stderr": self.stderr}


def _flat_pair(train: Any, test: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``train`` and ``test`` and return them flattened, float64, on the CPU."""
    check_points("train", train)
    check_points("test", test)
    if train.shape[0] < 2:
        raise ValueError(f"train must hold at least 2 images, got {train.shape[0]}")
    if test.shape[0] < 2:  # a standard error needs two
        raise ValueError(f"test must hold at least 2 images, got {test.shape[0]}")
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"train and test must share an event shape, got "
                         f"{tuple(train.shape[1:])} and {tuple(test.shape[1:])}")
    flat = [t.detach().to("cpu", torch.float64).flatten(1) for t in (train, test)]
    return flat[0], flat[1]


def _baseline(name: str, per_image: torch.Tensor) -> Baseline:
    n = per_image.numel()
    return Baseline(name=name, log_likelihood=float(per_image.mean()),
                    stderr=float(per_image.std(unbiased=True) / math.sqrt(n)),
                    per_image=per_image)


def gaussian_baseline(train: torch.Tensor, test: torch.Tensor) -> Baseline:
    """Fit a full-covariance Gaussian to ``train`` by maximum likelihood; score ``test``.

    The mean and covariance (divided by ``N``, the maximum-likelihood estimate) come from the
    flattened training images; the test log densities are exact, in float64.

    Args:
        train: Training images ``(N, *event_shape)``.
        test: Test images ``(M, *event_shape)`` of the same event shape.

    Raises:
        ValueError: If the covariance is singular (fewer images than dimensions, or constant
            or duplicated pixels); dequantised data never gives one.
    """
    x, y = _flat_pair(train, test)
    n, dim = x.shape
    mean = x.mean(0)
    centred = x - mean
    cov = centred.T @ centred / n
    # A Cholesky factor of a numerically singular matrix can still come out; test the
    # spread of eigenvalues instead, with the usual rank tolerance D * eps * largest.
    eig = torch.linalg.eigvalsh(cov)
    tol = dim * torch.finfo(torch.float64).eps * float(eig.max().clamp_min(0.0))
    chol, info = torch.linalg.cholesky_ex(cov)
    if float(eig.min()) <= tol or int(info) != 0:
        hint = (f" ({n} training images for {dim} dimensions)" if n <= dim
                else " (constant or linearly dependent pixels; dequantise the data)")
        raise ValueError(f"the covariance of train is singular{hint}, so a Gaussian has no "
                         f"density")
    z = torch.linalg.solve_triangular(chol, (y - mean).T, upper=False)
    log_det = 2.0 * chol.diagonal().log().sum()
    per_image = -0.5 * (dim * math.log(2 * math.pi) + log_det + z.pow(2).sum(0))
    return _baseline("gaussian", per_image)


def mixture_baseline(train: torch.Tensor, test: torch.Tensor, n_components: int = 10, *,
                     seed: int = 0) -> Baseline:
    """Fit a full-covariance Gaussian mixture to ``train`` (scikit-learn); score ``test``.

    Uses ``GaussianMixture(n_components, covariance_type="full", random_state=seed,
    reg_covar=1e-6)`` and its exact ``score_samples`` on the flattened test images.

    Args:
        train: Training images ``(N, *event_shape)``.
        test: Test images ``(M, *event_shape)`` of the same event shape.
        n_components: Mixture components.
        seed: ``random_state`` of the fit (k-means initialisation).

    Raises:
        ImportError: If scikit-learn is missing (``pip install "ebmcore[images]"``).
    """
    check_int("n_components", n_components, minimum=1)
    check_int("seed", seed, minimum=0)
    x, y = _flat_pair(train, test)
    if x.shape[0] < n_components:
        raise ValueError(f"train must hold at least n_components = {n_components} images, "
                         f"got {x.shape[0]}")
    try:  # scikit-learn is optional: only this baseline needs it
        from sklearn.mixture import GaussianMixture
    except ImportError as exc:
        raise ImportError('mixture_baseline needs scikit-learn; install it with: '
                          'pip install "ebmcore[images]"') from exc
    model = GaussianMixture(n_components, covariance_type="full", random_state=seed,
                            reg_covar=1e-6)
    model.fit(x.numpy())
    per_image = torch.from_numpy(model.score_samples(y.numpy())).to(torch.float64)
    return _baseline(f"mixture({n_components})", per_image)


class ImageClassifier(torch.nn.Module):
    """The small classifier :func:`train_classifier` returns: an MLP on the flattened image
    (one hidden layer of 256 SiLU units).

    Args:
        event_shape: Shape of one image, e.g. ``(1, 8, 8)``.
        n_classes: Number of classes (outputs).
        hidden: Hidden units.
    """

    def __init__(self, event_shape: tuple[int, ...], n_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.n_classes = n_classes
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(math.prod(self.event_shape), hidden),
            torch.nn.SiLU(), torch.nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits ``(B, n_classes)`` for images ``(B, *event_shape)``."""
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the hidden layer's activations ``(B, hidden)`` for images
        ``(B, *event_shape)``: the feature space of the Fréchet distance
        (:func:`ebmcore.evaluation.sample_metrics.image_frechet`)."""
        return self.net[:-1](x)


def fit_baselines(train: torch.Tensor, test: torch.Tensor, bin_width: float, *,
                  n_components: int = 10, seed: int = 0
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Fit the exact baselines (a full-covariance Gaussian, a Gaussian mixture) to ``train``
    and score ``test``.

    Returns:
        The fitted baselines by name, each :meth:`Baseline.to_dict` with its
        ``bits_per_dim``; and, by name, why a baseline could not be fitted (no scikit-learn
        for the mixture, a singular fit), so each caller reports it its own way.
    """
    dim = math.prod(test.shape[1:])
    fitted: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    fits = [("gaussian", lambda: gaussian_baseline(train, test)),
            (f"mixture({n_components})",
             lambda: mixture_baseline(train, test, n_components, seed=seed))]
    for name, fit in fits:
        try:
            result = fit()
        except (ImportError, ValueError) as exc:
            failed[name] = str(exc)
            continue
        fitted[name] = {**result.to_dict(),
                        "bits_per_dim": bits_per_dim(result.log_likelihood, dim, bin_width)}
    return fitted, failed


def _check_labels(labels: Any, n: int, n_classes: int | None = None) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per image, got "
                         f"{tuple(labels.shape)}")
    if n and int(labels.min()) < 0:
        raise ValueError(f"labels must be non-negative, got {int(labels.min())}")
    if n and n_classes is not None and int(labels.max()) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {int(labels.max())}")
    return labels.detach().long()


def train_classifier(images: torch.Tensor, labels: torch.Tensor, n_classes: int, *,
                     epochs: int = 30, seed: int = 0, batch_size: int = 128,
                     lr: float = 1e-3) -> torch.nn.Module:
    """Train a small image classifier (:class:`ImageClassifier`) with Adam and cross-entropy.

    Meant as a judge of samples, not a state-of-the-art model: on scikit-learn's 8x8 digits
    it trains in seconds on a CPU and reaches over 90% held-out accuracy. Deterministic given
    ``seed``: initialisation and shuffling draw from a private generator, and torch's global
    random state is left as it was.

    Args:
        images: Training images ``(N, *event_shape)``, finite floats; the classifier works
            in their dtype and on their device.
        labels: Integer class labels ``(N,)`` in ``[0, n_classes)``.
        n_classes: Number of classes (at least 2).
        epochs: Passes over the data.
        seed: Seed of the private generator.
        batch_size: Images per optimisation step.
        lr: Adam learning rate.

    Returns:
        The trained classifier, in eval mode.
    """
    check_int("n_classes", n_classes, minimum=2)
    check_points("images", images)
    labels = _check_labels(labels, images.shape[0], n_classes)
    check_int("epochs", epochs, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    lr = check_positive("lr", lr)

    generator = torch.Generator().manual_seed(seed)
    # Building nn.Linear draws its default init from the global RNG; fork it so the caller's
    # random stream is untouched, then re-draw every parameter from the private generator.
    with torch.random.fork_rng(devices=[]):
        model = ImageClassifier(tuple(images.shape[1:]), n_classes)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)  # torch's default Linear scale
                torch.nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    x = images.detach()
    y = labels.to(x.device)
    model = model.to(x.device, x.dtype)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = x.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return model.eval()


@torch.no_grad()
def _logits(classifier: torch.nn.Module, images: torch.Tensor,
            n_classes: int | None) -> torch.Tensor:
    """Run ``classifier`` on ``images`` in chunks, in eval mode; return float64 logits."""
    if not isinstance(classifier, torch.nn.Module):
        raise TypeError(f"classifier must be a torch.nn.Module, got "
                        f"{type(classifier).__name__}")
    expected = classifier.event_shape if isinstance(classifier, ImageClassifier) else None
    if expected is not None and tuple(images.shape[1:]) != tuple(expected):
        raise ValueError(f"images have event shape {tuple(images.shape[1:])} but the "
                         f"classifier expects {tuple(expected)}")
    if images.shape[0] == 0:  # e.g. every sample was non-finite: nothing to classify
        return torch.zeros(0, n_classes or 0, dtype=torch.float64)
    dtype, device = placement(classifier)
    with eval_mode(classifier):
        out = torch.cat([classifier(chunk.to(device, dtype)).to("cpu", torch.float64)
                         for chunk in images.detach().split(_EVAL_CHUNK)])
    if out.ndim != 2 or out.shape[0] != images.shape[0] or (
            n_classes is not None and out.shape[1] != n_classes):
        want = f"({images.shape[0]}, {n_classes if n_classes is not None else 'n_classes'})"
        raise ValueError(f"classifier must return logits of shape {want}, got "
                         f"{tuple(out.shape)}")
    return out


def classifier_accuracy(classifier: torch.nn.Module, images: torch.Tensor,
                        labels: torch.Tensor) -> float:
    """Share of ``images`` whose most likely class under ``classifier`` equals the label.

    Args:
        classifier: A module mapping images ``(B, *event_shape)`` to logits ``(B, K)``.
        images: Images ``(N, *event_shape)``, finite floats.
        labels: Integer labels ``(N,)`` in ``[0, K)``.
    """
    check_points("images", images)
    labels = _check_labels(labels, images.shape[0])
    logits = _logits(classifier, images, None)
    if int(labels.max()) >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}) (the classifier's "
                         f"outputs), got {int(labels.max())}")
    return float((logits.argmax(1) == labels.cpu()).double().mean())


@dataclass
class Coverage:
    """Which classes a classifier confidently sees in a set of samples.

    Attributes:
        threshold: The softmax probability that counts as confident.
        confident_share: Share of all samples (non-finite ones included) that the classifier
            labels with probability at least ``threshold``.
        counts: Per class, the number of confident samples given that label.
        shares: ``counts`` divided by the number of confident samples (all 0 if none).
        classes_covered: Classes with at least one confident sample.
        max_share: The largest entry of ``shares`` (near 1 means collapse onto one class).
        n_nonfinite: Samples with a non-finite value; they count as not confident.
    """

    threshold: float
    confident_share: float
    counts: list[int]
    shares: list[float]
    classes_covered: int
    max_share: float
    n_nonfinite: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain JSON-friendly values."""
        return asdict(self)


def class_coverage(classifier: torch.nn.Module, samples: torch.Tensor, n_classes: int, *,
                   threshold: float = 0.9) -> Coverage:
    """Count how many samples a classifier confidently assigns to each class.

    A good image model's samples are confidently classified about as often as real images,
    and spread over the classes as the data are; a collapsed one covers few classes.

    Args:
        classifier: A module mapping images ``(B, *event_shape)`` to logits
            ``(B, n_classes)``, e.g. from :func:`train_classifier`.
        samples: Model samples ``(N, *event_shape)``; rows with a non-finite value are not
            classified and count as not confident (reported in ``n_nonfinite``).
        n_classes: Number of classes.
        threshold: Softmax probability, in ``(0, 1)``, from which a label counts.
    """
    check_int("n_classes", n_classes, minimum=2)
    if isinstance(threshold, bool) or not isinstance(threshold, Real):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    check_points("samples", samples, finite=False)
    n = samples.shape[0]
    finite = torch.isfinite(samples.detach()).flatten(1).all(1)
    logits = _logits(classifier, samples[finite], n_classes)
    # NaN logits give NaN probabilities, which fail the >= test: not confident either.
    confidence, label = torch.softmax(logits, 1).max(1)
    confident = confidence >= threshold
    counts = torch.bincount(label[confident], minlength=n_classes)
    n_confident = int(counts.sum())
    shares = (counts.double() / n_confident if n_confident
              else torch.zeros(n_classes, dtype=torch.float64))
    return Coverage(threshold=threshold, confident_share=n_confident / n,
                    counts=[int(c) for c in counts], shares=[float(s) for s in shares],
                    classes_covered=int((counts > 0).sum()), max_share=float(shares.max()),
                    n_nonfinite=int(n - int(finite.sum())))
