"""What a run does differently for image data (:class:`ebmcore.dataset.ImageDataset`).

During training :class:`ReplayPictures` draws the chains as they form; at the end
:func:`evaluate_images` starts the chains from the model's base energy, judges the model on
the held-out split (:func:`ebmcore.evaluation.image_report.image_evaluation`: AIS bounds of
the test log-likelihood, class coverage, MMD; and
:func:`ebmcore.runs.field_images.image_sample_report`, the logistic judge and Fréchet ratio a
field run reports) and draws samples, held-out images and one
chain's evolution. The AIS budget comes from the data set's recipe
(:func:`ebmcore.runs.evaluating.ais_budget`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ebmcore.runs.chains import finite_chains
from ebmcore.runs.evaluating import ais_budget
from ebmcore.runs.folder import save_figure
from ebmcore.runs.trained_model import draw_samples, uniform_points

#: Pictures show images on the data's ``[0, 1]`` scale.
_SHOWN = (0.0, 1.0)


class ReplayPictures:
    """A training callback that draws the chains' states every ``every`` steps.

    It writes ``replay-step-XXXXXXXXX.png`` into ``folder``: a grid of the first 64 of the
    loss's persistent chains (:meth:`ebmcore.Loss.persistent_chains`, e.g. ``pcd``'s replay
    buffer), or of the step's negatives for losses without any, on the data's ``[0, 1]``
    scale, so a run shows how its samples formed.

    Args:
        folder: Where the pictures go (created on the first one).
        every: Steps between pictures.
    """

    def __init__(self, folder: Path, every: int) -> None:
        from ebmcore.validation import check_int

        self.folder = Path(folder)
        self.every = check_int("train.picture_every", every, minimum=1)

    def __call__(self, trainer: Any, output: Any) -> None:
        """Draw the states after every ``every``-th step and after the last one."""
        if trainer.step % self.every and trainer.step != trainer.steps:
            return
        from ebmcore import plot

        chains = trainer.loss.persistent_chains()
        states = chains if chains is not None and chains.numel() else output.negatives
        if states is None or states.dim() != 4:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        save_figure(plot.image_grid(states[:64].detach().cpu(), value_range=_SHOWN),
                    self.folder / f"replay-step-{trainer.step:09d}.png")


def evaluate_images(model: Any, dataset: Any, sampler: Any, config: dict[str, Any],
                    seed: int, out: Path, progress: bool) -> dict[str, Any]:
    """Sample an image model from its base energy (:meth:`ebmcore.Energy.base_energy`;
    uniform noise on ``[0, 1]`` without one), judge it on the held-out split and draw
    samples, held-out images and one chain's evolution.

    Args:
        model: The trained energy (in eval mode).
        dataset: The run's image data set (its training split).
        sampler: The run's sampler.
        config: The run's resolved configuration (``dataset``, ``evaluate``, ``sample``).
        seed: The run's seed.
        out: The run folder.
        progress: Show a progress bar on a terminal.
    """
    from ebmcore import plot
    from ebmcore.evaluation.image_report import image_evaluation
    from ebmcore.evaluation.images import train_classifier
    from ebmcore.runs.field_images import held_out_images, image_sample_report

    eval_cfg, sample_cfg = config["evaluate"], config["sample"]
    n_ais_chains, n_ais_temps = ais_budget(config["dataset"]["name"],
                                           eval_cfg.get("ais_chains"), eval_cfg.get("ais_temps"))
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    started = time.perf_counter()
    n_chains = int(sample_cfg["n_chains"])
    start_generator = torch.Generator().manual_seed(seed + 30_000)
    base = model.base_energy()
    if base is not None:
        x0 = base.sample(n_chains, start_generator).to(device, dtype)
    else:
        x0 = uniform_points(n_chains, tuple(dataset.event_shape), _SHOWN,
                            start_generator, dtype, device)
    finite, trajectory, sample_metrics = draw_samples(model, sampler, x0, sample_cfg, seed,
                                                      out, progress)
    # One judge serves the AIS report's coverage and the sample report below.
    (train, train_labels), _ = held_out_images(dataset, seed)
    classifier = train_classifier(train.float(), train_labels, dataset.n_classes, seed=seed)
    evaluation = image_evaluation(model, dataset, finite, n_ais_chains=n_ais_chains,
                                  n_ais_temps=n_ais_temps, seed=seed, classifier=classifier)
    sample_metrics["mmd_to_test_data"] = evaluation.mmd
    save_figure(plot.image_grid(finite.cpu(), value_range=_SHOWN), out / "samples.png")
    held_out = dataset.held_out().sample(64, torch.Generator().manual_seed(seed + 50_000))
    save_figure(plot.image_grid(held_out, value_range=_SHOWN), out / "data.png")
    chains = finite_chains(trajectory)
    save_figure(plot.chain_strip(chains[:, 0], value_range=_SHOWN), out / "chain.png")
    # the figures every image model gets, whatever drew its samples (a field run's too)
    judged = image_sample_report(dataset, finite, seed=seed, classifier=classifier)
    return {"image_evaluation": evaluation.to_dict(), "image_samples": judged,
            "sampling": sample_metrics, "evaluate_seconds": time.perf_counter() - started}
