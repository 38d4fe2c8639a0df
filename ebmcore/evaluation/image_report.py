"""Judge an image model: AIS likelihood bounds against exact baselines, coverage, MMD.

:func:`image_evaluation` puts together what the image data sets' tables report
(docs/training-results.md): the model's test log-likelihood bracketed by annealed importance
sampling, in nats per image and bits per dimension, beside a full-covariance Gaussian and a
Gaussian mixture fitted to the same training split, whose likelihoods are exact; the share of
the model's samples a classifier trained on the real images labels with confidence, and the
classes they fall in; and an MMD test of the samples against held-out images.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ebmcore.dataset import ImageDataset
from ebmcore.energy import Energy
from ebmcore.evaluation._model import eval_mode, placement
from ebmcore.evaluation.ais import ais, reverse_ais
from ebmcore.evaluation.discrepancy import mmd
from ebmcore.evaluation.images import (
    bits_per_dim,
    class_coverage,
    classifier_accuracy,
    fit_baselines,
    train_classifier,
)
from ebmcore.evaluation.reference import ReferenceGaussian
from ebmcore.evaluation.transition import MALATransition
from ebmcore.validation import check_int, check_positive

#: Step size of the preconditioned MALA transitions along the AIS path: in the base
#: Gaussian's whitened coordinates, near MALA's optimum for a 64-dimensional normal.
AIS_STEP_SIZE = 0.2


@dataclass
class LikelihoodBounds:
    """A test log-likelihood bracketed by AIS, per image and per dimension.

    ``lower`` uses reverse AIS's upper bound of ``log Z``, ``upper`` forward AIS's lower
    bound; each holds in expectation (reverse AIS only as far as its start, the forward
    chains' final states, are draws from the model).

    Attributes:
        lower: Test log-likelihood lower bound, nats per image.
        upper: Test log-likelihood upper bound, nats per image.
        lower_stderr: Standard error of ``lower`` (test images and AIS weights together).
        upper_stderr: Standard error of ``upper``.
        bits_per_dim_lower: Bits per dimension from ``upper`` (the better figure).
        bits_per_dim_upper: Bits per dimension from ``lower`` (the sure one).
        log_z_lower: Forward AIS's estimate of ``log Z``.
        log_z_upper: Reverse AIS's estimate of ``log Z``.
        forward_ess: Effective sample size of the forward AIS weights.
        reverse_ess: Effective sample size of the reverse AIS weights.
        acceptance: Mean acceptance of the forward transitions.
    """

    lower: float
    upper: float
    lower_stderr: float
    upper_stderr: float
    bits_per_dim_lower: float
    bits_per_dim_upper: float
    log_z_lower: float
    log_z_upper: float
    forward_ess: float
    reverse_ess: float
    acceptance: float | None


@dataclass
class ImageEvaluation:
    """What :func:`image_evaluation` measured; every figure is on the held-out split.

    Attributes:
        n_test: Held-out images used.
        dim: Dimensions per image.
        likelihood: The model's AIS-bracketed test log-likelihood.
        baselines: Exact test log-likelihoods (nats per image) and bits per dimension of a
            full-covariance Gaussian and a Gaussian mixture fitted to the training split.
        classifier_accuracy: The coverage classifier's accuracy on the held-out images.
        coverage: Class coverage of the model's samples.
        data_coverage: The same figures for the held-out images themselves (the reference:
            even real images are not all labelled with confidence).
        mmd: MMD test of the samples against held-out images.
        notes: Figures left out and why.
    """

    n_test: int
    dim: int
    likelihood: LikelihoodBounds
    baselines: dict[str, dict[str, float]]
    classifier_accuracy: float | None
    coverage: dict[str, Any] | None
    data_coverage: dict[str, Any] | None
    mmd: dict[str, float] | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return asdict(self)


def _check_image_dataset(dataset: Any) -> ImageDataset:
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must implement the image-data protocol (subclass "
                        f"ebmcore.dataset.ImageDataset), got {type(dataset).__name__}")
    return dataset


def ais_start(model: Energy, train: torch.Tensor) -> Energy:
    """The start of the AIS path: the model's own base (:meth:`ebmcore.Energy.base_energy`),
    or for a model without one a full-covariance Gaussian fitted to the training images
    (:meth:`ReferenceGaussian.fit`: a start that already sits where the images are)."""
    own = model.base_energy()
    return ReferenceGaussian.fit(train) if own is None else own


def likelihood_bounds(model: Energy, test: torch.Tensor, start: Energy, bin_width: float, *,
                      n_chains: int = 200, n_temps: int = 500,
                      step_size: float = AIS_STEP_SIZE,
                      generator: torch.Generator | None = None) -> LikelihoodBounds:
    """Bracket the mean test log-likelihood ``-E(x) - log Z`` with forward and reverse AIS.

    The transitions are MALA preconditioned by the start Gaussian's covariance (exact for
    every intermediate distribution, so the bounds hold), ``n_temps`` temperatures, one step
    each. Reverse AIS starts from the forward chains' final states.

    Args:
        model: The energy.
        test: Held-out images ``(N, *event_shape)``, dequantised.
        start: A Gaussian energy with exact samples, ``log_z`` and ``preconditioner()``.
        bin_width: One intensity bin's width, for bits per dimension.
        n_chains: Annealing chains.
        n_temps: Temperatures along the path.
        step_size: MALA's step size in the start Gaussian's whitened coordinates.
        generator: Source of randomness.
    """
    bounds, _ = _bracket(model, test, start, bin_width, n_chains=n_chains, n_temps=n_temps,
                         step_size=step_size, generator=generator)
    return bounds


def _bracket(model: Energy, test: torch.Tensor, start: Energy, bin_width: float, *,
             n_chains: int, n_temps: int, step_size: float,
             generator: torch.Generator | None) -> tuple[LikelihoodBounds, torch.Tensor]:
    """:func:`likelihood_bounds` and the forward chains' final states, which double as
    approximate model samples (one annealing run serves both)."""
    check_int("n_chains", n_chains, minimum=2)
    check_positive("step_size", step_size)
    sampler = MALATransition(step_size, precondition=True)
    forward = ais(model, start, n_chains=n_chains, n_temps=n_temps, sampler=sampler,
                  generator=generator)
    backward = reverse_ais(model, forward.samples, start, n_temps=n_temps, sampler=sampler,
                           generator=generator)
    with torch.no_grad(), eval_mode(model):
        energies = torch.cat([model(chunk).double() for chunk in test.split(512)])
    mean_e = float(energies.mean())
    se_e = float(energies.std() / math.sqrt(energies.numel()))
    dim = math.prod(test.shape[1:])
    lower, upper = -mean_e - backward.log_z, -mean_e - forward.log_z
    bounds = LikelihoodBounds(
        lower=lower, upper=upper,
        lower_stderr=math.hypot(se_e, backward.stderr),
        upper_stderr=math.hypot(se_e, forward.stderr),
        bits_per_dim_lower=bits_per_dim(upper, dim, bin_width),
        bits_per_dim_upper=bits_per_dim(lower, dim, bin_width),
        log_z_lower=forward.log_z, log_z_upper=backward.log_z,
        forward_ess=forward.ess, reverse_ess=backward.ess, acceptance=forward.acceptance)
    return bounds, forward.samples


def crossed_bracket_note(bounds: LikelihoodBounds) -> str | None:
    """Say why the bracket is no bracket when its lower end lies above its upper end by more
    than two standard errors, else ``None``.

    Each end holds only in expectation and only when the annealing reaches the model's
    distribution; a lower end clearly above the upper one means it did not (or ``exp(-E)``
    is not a density), and neither figure may be read as a bound.

    Args:
        bounds: The AIS bracket.
    """
    gap = bounds.lower - bounds.upper
    if not gap > 2.0 * math.hypot(bounds.lower_stderr, bounds.upper_stderr):
        return None
    return (f"the AIS bracket crossed: its lower end lies {gap:.3g} nats per image above its "
            f"upper end (forward / reverse ESS {bounds.forward_ess:.3g} / "
            f"{bounds.reverse_ess:.3g}), so neither is a bound: the annealing did not reach "
            f"the model's distribution, or exp(-E) is not a density; more temperatures "
            f"(evaluate.ais_temps) or a confining base may help")


def image_evaluation(model: Energy, dataset: Any, samples: torch.Tensor | None = None, *,
                     n_ais_chains: int = 200, n_ais_temps: int = 500,
                     ais_step_size: float = AIS_STEP_SIZE, n_components: int = 10,
                     classifier_epochs: int = 30, threshold: float = 0.9,
                     seed: int = 0,
                     classifier: torch.nn.Module | None = None) -> ImageEvaluation:
    """Evaluate an image model on its data set's held-out split.

    Args:
        model: The trained energy (a density: see ``docs/architecture.md``).
        dataset: The training split of an image data set (an
            :class:`ebmcore.dataset.ImageDataset`).
        samples: The model's samples for coverage and MMD; ``None`` uses the forward AIS
            chains' final states.
        n_ais_chains: Annealing chains.
        n_ais_temps: Temperatures along the AIS path.
        ais_step_size: Preconditioned MALA step size along the path.
        n_components: Components of the Gaussian-mixture baseline.
        classifier_epochs: Training epochs of the coverage classifier.
        threshold: Softmax probability that counts a sample as confidently classified.
        seed: Seeds every draw (dequantisation, AIS, the classifier, the MMD permutations).
        classifier: A coverage classifier already trained on this split (what
            :func:`~ebmcore.evaluation.images.train_classifier` gives for the training
            images dequantised from ``seed``), so that a caller judging the samples again
            trains it once; ``None`` trains it here.
    """
    dataset = _check_image_dataset(dataset)
    dtype, device = placement(model)
    train, train_labels = dataset.tensor(dtype=torch.float64, return_labels=True,
                                         generator=torch.Generator().manual_seed(seed))
    test, test_labels = dataset.held_out().tensor(
        dtype=torch.float64, return_labels=True,
        generator=torch.Generator().manual_seed(seed + 1))
    dim = math.prod(test.shape[1:])
    baselines, failed = fit_baselines(train, test, dataset.bin_width,
                                      n_components=n_components, seed=seed)
    notes = [f"baseline {name} left out: {why}" for name, why in failed.items()]

    start = ais_start(model, train.to(device, dtype))
    generator = torch.Generator(device=device).manual_seed(seed + 2)
    bounds, forward_samples = _bracket(model, test.to(device, dtype), start, dataset.bin_width,
                                       n_chains=n_ais_chains, n_temps=n_ais_temps,
                                       step_size=ais_step_size, generator=generator)
    crossed = crossed_bracket_note(bounds)
    if crossed is not None:
        notes.append(crossed)
        warnings.warn(crossed, RuntimeWarning, stacklevel=2)
    if samples is None:
        notes.append("coverage and MMD use the forward AIS chains' final states")
        samples = forward_samples
    samples = samples.detach().to("cpu", torch.float64)

    if classifier is None:
        classifier = train_classifier(train.float(), train_labels, dataset.n_classes,
                                      epochs=classifier_epochs, seed=seed)
    accuracy = classifier_accuracy(classifier, test.float(), test_labels)
    coverage = class_coverage(classifier, samples.float(), dataset.n_classes,
                              threshold=threshold)
    data_coverage = class_coverage(classifier, test.float(), dataset.n_classes,
                                   threshold=threshold)
    finite = samples[torch.isfinite(samples.flatten(1)).all(1)]
    n = min(finite.shape[0], test.shape[0], 1000)
    test_result = None
    if n >= 10:
        test_result = asdict(mmd(finite[:n], test[:n], n_permutations=200,
                                 generator=torch.Generator().manual_seed(seed + 3)))
    else:
        notes.append(f"MMD left out: {finite.shape[0]} finite samples")
    return ImageEvaluation(n_test=int(test.shape[0]), dim=dim, likelihood=bounds,
                           baselines=baselines, classifier_accuracy=accuracy,
                           coverage=coverage.to_dict(), data_coverage=data_coverage.to_dict(),
                           mmd=test_result, notes=notes)

