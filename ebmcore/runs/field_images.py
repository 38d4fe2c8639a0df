"""The end of a field run on image data: sample the field as a flow and judge the images.

A trained :class:`~ebmcore.field.Field` on an image data set
(:class:`ebmcore.dataset.ImageDataset`) is sampled by the run's flow sampler, like any
field (:mod:`ebmcore.runs.fields`), and judged on the held-out split by
:func:`image_sample_report`, which holds every figure that needs only samples:

- **class coverage** under two judges trained on the training split: the image report's
  small MLP classifier (:func:`ebmcore.evaluation.images.class_coverage`) and a logistic
  regression on the raw pixels with the samples clipped to the data's ``[0, 1]``
  (:func:`logistic_coverage`, issue #23's yardstick); "confident" means probability at least
  0.9, and the held-out images' own figures are the reference;
- the **Fréchet distance** to the training images in the classifier's hidden-layer features,
  with the held-out split's own distance as the reference
  (:func:`ebmcore.evaluation.sample_metrics.image_frechet`);
- the exact **baselines** of the likelihood: a full-covariance Gaussian and a Gaussian mixture
  fitted to the dequantised training split, in nats per image and bits per dimension.

The field's own **likelihood** is its probability-flow ODE's
(:func:`ebmcore.runs.fields.flow_likelihood`), on the held-out images dequantised exactly as
the baselines' are, with the data's bin width, so the bits per dimension of all three compare.
The run writes ``samples.png`` (the samples, on ``[0, 1]``) beside ``data.png`` (held-out
images) (:func:`draw_image_samples`); ``ebmcore sample --checkpoint`` on the run's model
writes the same two pictures and :func:`image_sample_report`'s figures
(:func:`ebmcore.runs.fields.sample_field_run`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ebmcore.dataset import ImageDataset
from ebmcore.field import Field
from ebmcore.runs.folder import save_figure

#: Pictures show images on the data's ``[0, 1]`` scale.
_SHOWN = (0.0, 1.0)
#: The probability from which a judge's label counts as confident.
CONFIDENT = 0.9


_Labelled = tuple[torch.Tensor, torch.Tensor]


def held_out_images(dataset: ImageDataset, seed: int) -> tuple[_Labelled, _Labelled]:
    """The training and held-out images in float64, dequantised from ``seed`` and
    ``seed + 1`` (as :func:`ebmcore.evaluation.image_report.image_evaluation` draws them),
    each with its labels: ``((train, train_labels), (test, test_labels))``."""
    train = dataset.tensor(dtype=torch.float64, return_labels=True,
                           generator=torch.Generator().manual_seed(seed))
    test = dataset.held_out().tensor(dtype=torch.float64, return_labels=True,
                                     generator=torch.Generator().manual_seed(seed + 1))
    return train, test


def logistic_coverage(train: torch.Tensor, train_labels: torch.Tensor,
                      samples: torch.Tensor, n_classes: int, *,
                      threshold: float = CONFIDENT) -> dict[str, Any]:
    """Class coverage of ``samples`` by a logistic regression on raw pixels.

    The regression (scikit-learn's ``LogisticRegression`` with its defaults, ``C = 1``)
    is fitted to the flattened training images; the samples are clipped to ``[0, 1]`` (the
    data's scale) before they are classified, and non-finite ones count as not confident.

    Args:
        train: Training images ``(N, *event_shape)`` on ``[0, 1]``.
        train_labels: Their labels ``(N,)``.
        samples: Images to judge ``(M, *event_shape)``.
        n_classes: Number of classes.
        threshold: Probability from which a label counts as confident.

    Returns:
        ``confident_share``, ``classes_covered``, ``max_share`` (largest class among the
        confident samples), ``counts`` and ``threshold``.
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - scikit-learn ships with the extra
        raise ImportError('the logistic-regression judge needs scikit-learn: '
                          'pip install "ebmcore[images]"') from exc
    x = train.detach().flatten(1).to("cpu", torch.float64).numpy()
    judge = LogisticRegression(max_iter=5000).fit(x, train_labels.cpu().numpy())
    flat = samples.detach().flatten(1).to("cpu", torch.float64)
    finite = torch.isfinite(flat).all(1)
    counts = torch.zeros(n_classes, dtype=torch.long)
    if bool(finite.any()):
        probs = torch.from_numpy(judge.predict_proba(flat[finite].clamp(0.0, 1.0).numpy()))
        confidence, label = probs.max(1)
        counts = torch.bincount(label[confidence >= threshold], minlength=n_classes)
    n_confident = int(counts.sum())
    return {"threshold": threshold, "confident_share": n_confident / max(samples.shape[0], 1),
            "classes_covered": int((counts > 0).sum()),
            "max_share": float(counts.max()) / n_confident if n_confident else 0.0,
            "counts": [int(c) for c in counts]}


def likelihood_baselines(train: torch.Tensor, test: torch.Tensor, bin_width: float, *,
                         n_components: int = 10, seed: int = 0) -> dict[str, Any]:
    """Exact held-out log-likelihoods of a full-covariance Gaussian and a Gaussian mixture
    fitted to ``train``, by name, each with its ``bits_per_dim``; a baseline that cannot be
    fitted (no scikit-learn for the mixture) is left out with a ``note``."""
    from ebmcore.evaluation.images import fit_baselines

    fitted, failed = fit_baselines(train, test, bin_width, n_components=n_components,
                                   seed=seed)
    return {**fitted, **{name: {"note": f"left out: {why}"} for name, why in failed.items()}}


def image_sample_report(dataset: ImageDataset, samples: torch.Tensor, *, seed: int = 0,
                        classifier: torch.nn.Module | None = None) -> dict[str, Any]:
    """Judge image samples on ``dataset``'s held-out split, whatever produced them.

    Args:
        dataset: The training split of an image data set.
        samples: Samples ``(N, *event_shape)`` on the data's scale (any finite values;
            non-finite rows count as failures).
        seed: Seeds the dequantisation and the classifier.
        classifier: The MLP judge already trained on the training images dequantised from
            ``seed`` (:func:`~ebmcore.evaluation.images.train_classifier` with ``seed``),
            so that it is trained once per evaluation; ``None`` trains it here.

    Returns:
        ``coverage`` (the MLP classifier's) and ``data_coverage`` (the held-out images'),
        ``logistic_coverage`` and ``logistic_data_coverage`` (:func:`logistic_coverage`),
        ``classifier_accuracy`` and ``frechet`` (:func:`~ebmcore.evaluation.sample_metrics.
        image_frechet`: ``distance``, ``reference``, ``ratio``).
    """
    from ebmcore.evaluation.images import class_coverage, classifier_accuracy, train_classifier
    from ebmcore.evaluation.sample_metrics import image_frechet

    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must implement the image-data protocol, got "
                        f"{type(dataset).__name__}")
    shape = tuple(dataset.event_shape)
    samples = samples.detach().to("cpu", torch.float32).reshape(-1, *shape)
    (train, train_labels), (test, test_labels) = held_out_images(dataset, seed)
    train, test = train.float(), test.float()
    if classifier is None:
        classifier = train_classifier(train, train_labels, dataset.n_classes, seed=seed)
    return {
        "classifier_accuracy": classifier_accuracy(classifier, test, test_labels),
        "coverage": class_coverage(classifier, samples, dataset.n_classes,
                                   threshold=CONFIDENT).to_dict(),
        "data_coverage": class_coverage(classifier, test, dataset.n_classes,
                                        threshold=CONFIDENT).to_dict(),
        "logistic_coverage": logistic_coverage(train, train_labels, samples,
                                               dataset.n_classes),
        "logistic_data_coverage": logistic_coverage(train, train_labels, test,
                                                    dataset.n_classes),
        "frechet": image_frechet(classifier, samples, train, test).to_dict(),
    }


def score_field_images(field: Field, dataset: ImageDataset, settings: dict[str, Any],
                       sampler_spec: dict[str, Any], eval_cfg: dict[str, Any],
                       n_samples: int, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sample ``field`` as a flow and judge it on ``dataset``'s held-out split.

    Args:
        field: The trained field (in eval mode), without an energy; a vector field (an
            ``mlp_field`` on the flattened images) or an image field.
        dataset: The image data set (its training split).
        settings: How to read the field (:meth:`ebmcore.Loss.flow_settings`).
        sampler_spec: ``{"name": ..., "params": {...}}`` of the flow sampler.
        eval_cfg: The run's ``[evaluate]`` section (``integrator``, ``likelihood_points``).
        n_samples: How many samples to draw.
        seed: Every draw here derives its own stream from it.

    Returns:
        The samples ``(n_samples, *event_shape)`` on the CPU and the figures:
        ``likelihood`` (bits per dimension on the dequantised images' scale),
        ``baselines``, ``image_samples`` (:func:`image_sample_report`) and
        ``flow_sampling``.
    """
    from ebmcore.runs.fields import draw_flow, flow_likelihood, flow_sampler

    shape = tuple(dataset.event_shape)
    sampler = flow_sampler(sampler_spec, settings)
    samples, sampling = draw_flow(field, sampler, int(n_samples), seed + 20_000)
    samples = samples.reshape(-1, *shape)
    (train, _), (test, _) = held_out_images(dataset, seed)
    field_shape = tuple(field.event_shape) if field.event_shape is not None else shape
    dtype = next(field.parameters()).dtype
    likelihood = flow_likelihood(field, test.to(dtype).reshape(-1, *field_shape), settings,
                                 eval_cfg, sampling["t_span"][-1], seed + 50_000,
                                 bin_width=dataset.bin_width)
    return samples, {
        "likelihood": likelihood,
        "baselines": likelihood_baselines(train, test, dataset.bin_width, seed=seed),
        "image_samples": image_sample_report(dataset, samples, seed=seed),
        "flow_sampling": sampling,
    }


def evaluate_field_images(field: Field, dataset: ImageDataset, loss: Any,
                          config: dict[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """Sample a trained field on image data as a flow and judge it
    (:func:`score_field_images`); write ``samples.pt``, ``samples.png`` (the samples on
    ``[0, 1]``) and ``data.png`` (held-out images).

    Args:
        field: The trained field (in eval mode), without an energy.
        dataset: The run's image data set (its training split).
        loss: The loss that trained it (its :meth:`~ebmcore.Loss.flow_settings`).
        config: The run's resolved configuration (``sampler``, ``evaluate``, ``sample``).
        seed: The run's seed; every draw here derives its own stream from it.
        out: The run folder.

    Returns:
        The metrics to merge into ``metrics.json``: :func:`score_field_images`'s figures and
        ``evaluate_seconds``.
    """
    started = time.perf_counter()
    samples, result = score_field_images(field, dataset, loss.flow_settings(),
                                         config["sampler"], config["evaluate"],
                                         int(config["sample"]["n_chains"]), seed)
    torch.save(samples, out / "samples.pt")
    draw_image_samples(samples, dataset, seed, out)
    result["evaluate_seconds"] = time.perf_counter() - started
    return result


def draw_image_samples(samples: torch.Tensor, dataset: ImageDataset, seed: int,
                       out: Path) -> list[Path]:
    """Write ``samples.png`` (a grid of the finite samples on the data's ``[0, 1]`` scale)
    and ``data.png`` (64 held-out images, drawn with ``seed``) into ``out``; return both
    paths. A field run and ``ebmcore sample --checkpoint`` on its model draw the same."""
    from ebmcore import plot
    from ebmcore.runs.chains import finite_rows

    shown = samples.reshape(-1, *dataset.event_shape)
    pictures = [save_figure(plot.image_grid(finite_rows(shown), value_range=_SHOWN),
                            Path(out) / "samples.png")]
    held_out = dataset.held_out().sample(64, torch.Generator().manual_seed(seed + 50_000))
    pictures.append(save_figure(plot.image_grid(held_out, value_range=_SHOWN),
                                Path(out) / "data.png"))
    return pictures
