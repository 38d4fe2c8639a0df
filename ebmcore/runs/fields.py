"""The end of a run whose model is a field: sample it as a flow and score it.

A trained :class:`~ebmcore.field.Field` that is no energy's gradient has no density to
sample by MCMC or to evaluate on a grid. It is sampled instead by the run's ``[sampler]``
(a flow sampler: the field loss's recipe names it), read as the loss that trained it says
(:meth:`ebmcore.Loss.flow_settings`: the prediction, the interpolant, whether it takes a
time), and scored by

- the log-likelihood of held-out points under its probability-flow ODE
  (:func:`ebmcore.evaluation.likelihood.flow_log_likelihood`), integrated by the
  integrator the run's ``evaluate.integrator`` names (:func:`likelihood_integrator`; a
  time-free field carries noise to data along no path in unit time, so it gets no
  likelihood);
- on 2-D data sets with an exact density, the total variation between a histogram of its
  samples and the data (:func:`ebmcore.evaluation.sample_metrics.histogram_tv`);
- an MMD test of its samples against held-out data.

On image data the images are judged instead (:mod:`ebmcore.runs.field_images`: class
coverage, Fréchet distance, the likelihood in bits per dimension beside exact baselines).
A field with an energy (:class:`ebmcore.field.EnergyField`) keeps the energy's path.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.field import Field
from ebmcore.runs.build import component_block
from ebmcore.runs.chains import finite_rows
from ebmcore.runs.folder import save_figure


def is_flow_model(model: Any) -> bool:
    """Whether ``model`` is sampled and evaluated as a flow: a :class:`~ebmcore.field.Field`
    without an energy (one that has an energy keeps the energy's path)."""
    return isinstance(model, Field) and model.energy() is None


def flow_sampler(sampler_spec: dict[str, Any], settings: dict[str, Any]) -> Any:
    """Create the run's flow sampler: its ``[sampler]`` section with the training loss's
    :meth:`~ebmcore.Loss.flow_settings` over its parameters.

    Raises:
        ValueError: When the section names an MCMC sampler (an :class:`ebmcore.Sampler`),
            which needs an energy.
    """
    block = component_block("sampler", sampler_spec)
    sampler = ebmcore.create("sampler", block["name"], **{**block["params"], **settings})
    if isinstance(sampler, ebmcore.Sampler):
        raise ValueError(f"the model is a field without an energy, which MCMC cannot sample; "
                         f"[sampler] names {block['name']!r}: name a flow sampler (one that "
                         f"integrates the field from noise)")
    return sampler


def draw_flow(field: Field, sampler: Any, n: int, seed: int
              ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Integrate ``n`` noise draws along ``field``; return the samples (on the CPU) and the
    sampling metrics (field evaluations, steps, seconds, non-finite samples)."""
    device = next(field.parameters()).device
    result = sampler.sample(field, int(n), generator=torch.Generator(device).manual_seed(seed))
    samples = result.samples.detach().cpu()
    finite = finite_rows(samples)
    metrics = {"nfe": int(result.nfe), "steps": int(result.steps),
               "n_samples": int(samples.shape[0]),
               "nonfinite_samples": int(samples.shape[0] - finite.shape[0]),
               **{k: v for k, v in result.diagnostics.items() if k != "t_span"},
               "t_span": list(result.diagnostics.get("t_span", ()))}
    return samples, metrics


def likelihood_integrator(spec: Any) -> Any:
    """The integrator ``evaluate.integrator`` names: a registered name (``"rk4"``, with its
    default steps) or a table ``{"name": ..., "params": {...}}`` (``steps = 20``).

    Raises:
        ValueError: When ``spec`` is neither.
    """
    if isinstance(spec, str):
        return ebmcore.create("integrator", spec)
    if isinstance(spec, dict):
        block = component_block("evaluate.integrator", spec)
        return ebmcore.create("integrator", block["name"], **block["params"])
    raise ValueError(f"evaluate.integrator must be an integrator's name or a table "
                     f"{{name = ..., params = {{...}}}}, got {spec!r}")


def flow_likelihood(field: Field, test_x: torch.Tensor, settings: dict[str, Any],
                    eval_cfg: dict[str, Any], t_data: float, seed: int,
                    bin_width: float | None = None) -> dict[str, Any]:
    """The held-out log-likelihood under ``field``'s probability-flow ODE, or a note saying
    why there is none (no ``evaluate.integrator`` set, or a time-free field).

    ``t_data`` is where the flow sampler's integration ended: just below 1 where the
    field's reading is singular at the data end (a noise prediction on ``vp``), so the
    points are scored where the samples were drawn. ``bin_width`` (dequantised images: the
    data's :attr:`~ebmcore.dataset.ImageDataset.bin_width`) makes the bits per dimension those
    of the discrete images, as the image baselines report them.
    """
    from ebmcore.evaluation.likelihood import flow_log_likelihood

    spec = eval_cfg.get("integrator")
    if spec is None:
        return {"note": "no evaluate.integrator set: no likelihood computed"}
    if settings.get("time_invariant", False):
        return {"note": "a time-free field carries noise to data along no path in unit "
                        "time: no flow likelihood"}
    interpolant = settings.get("interpolant")
    if isinstance(interpolant, str):
        interpolant = ebmcore.create("interpolant", interpolant)
    parameter = next(field.parameters())
    n = min(int(eval_cfg.get("likelihood_points", test_x.shape[0])), test_x.shape[0])
    points = test_x[:n].to(parameter.device, parameter.dtype)
    result = flow_log_likelihood(field, points, likelihood_integrator(spec),
                                 interpolant=interpolant,
                                 prediction=settings.get("prediction", "velocity"),
                                 t_data=float(t_data), bin_width=bin_width,
                                 generator=torch.Generator().manual_seed(seed))
    return result.to_dict()


def score_field(field: Field, dataset: Any, settings: dict[str, Any],
                sampler_spec: dict[str, Any], eval_cfg: dict[str, Any], n_samples: int,
                test_x: torch.Tensor, box: Any, seed: int
                ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sample ``field`` as a flow and score it against ``test_x`` (held-out data).

    Args:
        field: A field without an energy, in eval mode.
        dataset: Its data set (the exact density of the histogram TV, on 2-D data).
        settings: How to read the field (:meth:`ebmcore.Loss.flow_settings`).
        sampler_spec: ``{"name": ..., "params": {...}}`` of the flow sampler.
        eval_cfg: The run's ``[evaluate]`` section (``integrator``, ``likelihood_points``).
        n_samples: How many samples to draw.
        test_x: Held-out points.
        box: The evaluation box of the histogram.
        seed: Every draw here derives its own stream from it.

    Returns:
        The samples (on the CPU) and the figures: ``likelihood``, ``histogram_tv`` (2-D data
        with an exact density) and ``flow_sampling`` (with ``mmd_to_test_data``). On image
        data (:class:`ebmcore.dataset.ImageDataset`) ``test_x`` and ``box`` are not used: the
        images are judged on the data set's held-out split instead
        (:func:`ebmcore.runs.field_images.score_field_images`).
    """
    from ebmcore.evaluate import mmd
    from ebmcore.evaluation.sample_metrics import histogram_tv
    from ebmcore.runs.build import is_image_dataset

    if is_image_dataset(dataset):
        from ebmcore.runs.field_images import score_field_images

        return score_field_images(field, dataset, settings, sampler_spec, eval_cfg, n_samples,
                                  seed)
    sampler = flow_sampler(sampler_spec, settings)
    samples, sampling = draw_flow(field, sampler, n_samples, seed + 20_000)
    finite = finite_rows(samples)
    result: dict[str, Any] = {
        "likelihood": flow_likelihood(field, test_x, settings, eval_cfg,
                                      sampling["t_span"][-1], seed + 50_000)}
    if tuple(dataset.event_shape) == (2,) and dataset.has_log_prob:
        result["histogram_tv"] = histogram_tv(
            samples, dataset, bounds=box,
            generator=torch.Generator().manual_seed(seed + 60_000)).to_dict()
    n_compare = min(2000, finite.shape[0], test_x.shape[0])
    if n_compare >= 10:
        test = mmd(finite[:n_compare].double(), test_x[:n_compare].cpu().double(),
                   n_permutations=200, generator=torch.Generator().manual_seed(seed + 40_000))
        sampling["mmd_to_test_data"] = asdict(test)
    result["flow_sampling"] = sampling
    return samples, result


def evaluate_and_sample_field(field: Field, dataset: Any, loss: Any, config: dict[str, Any],
                              seed: int, out: Path) -> dict[str, Any]:
    """Sample a trained field as a flow and score it (:func:`score_field`); write
    ``samples.pt`` and, for 2-D data, ``samples.png`` into ``out``. On image data
    (:class:`ebmcore.dataset.ImageDataset`) the images are judged instead by
    :func:`ebmcore.runs.field_images.evaluate_field_images`.

    Args:
        field: The trained field (in eval mode), without an energy.
        dataset: The run's data set.
        loss: The loss that trained it (its :meth:`~ebmcore.Loss.flow_settings`).
        config: The run's resolved configuration (``sampler``, ``evaluate``, ``sample``).
        seed: The run's seed; every draw here derives its own stream from it.
        out: The run folder.

    Returns:
        The metrics to merge into ``metrics.json``: :func:`score_field`'s figures and
        ``evaluate_seconds``.
    """
    from ebmcore import plot
    from ebmcore.runs.build import is_image_dataset
    from ebmcore.runs.trained_model import run_box

    if is_image_dataset(dataset):
        from ebmcore.runs.field_images import evaluate_field_images

        return evaluate_field_images(field, dataset, loss, config, seed, out)
    eval_cfg = config["evaluate"]
    started = time.perf_counter()
    test_x = dataset.sample(int(eval_cfg["n_test"]),
                            generator=torch.Generator().manual_seed(seed + 10_000))
    box = run_box(eval_cfg.get("bounds"), dataset, test_x)
    samples, result = score_field(field, dataset, loss.flow_settings(), config["sampler"],
                                  eval_cfg, int(config["sample"]["n_chains"]), test_x, box,
                                  seed)
    torch.save(samples, out / "samples.pt")
    if tuple(dataset.event_shape) == (2,):
        save_figure(plot.sample_scatter(finite_rows(samples), bounds=box), out / "samples.png")
    result["evaluate_seconds"] = time.perf_counter() - started
    return result


def saved_run_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The configuration of the run that saved a model (its config.toml travels in the
    model file's ``meta``), or ``{}`` for a file without a readable one."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    text = meta.get("config_toml")
    try:
        return tomllib.loads(text) if isinstance(text, str) else {}
    except tomllib.TOMLDecodeError:
        return {}


def saved_flow_settings(run_config: dict[str, Any]) -> dict[str, Any]:
    """The :meth:`~ebmcore.Loss.flow_settings` of the loss a saved run trained with, by
    rebuilding that loss from the run's ``[loss]`` section; ``{}`` when the run records none
    or its loss draws negatives with a sampler (it trained an energy, not a field)."""
    from ebmcore.runs.build import descriptor

    block = run_config.get("loss")
    if not isinstance(block, dict) or not block.get("name"):
        return {}
    block = component_block("loss", block)
    if descriptor("loss", block["name"]).takes_sampler:
        return {}
    return ebmcore.create("loss", block["name"], **block["params"]).flow_settings()


def sample_field_run(field: Field, sampler_spec: dict[str, Any], settings: dict[str, Any],
                     n: int, out: str | Path, *, seed: int = 0, overwrite: bool = False,
                     dataset: Any = None) -> dict[str, Any]:
    """Sample ``field`` as a flow and write ``samples.pt``, ``samples.npy``,
    ``diagnostics.json`` and a picture: ``samples.png``, a scatter for 2-D points; on image
    data the grid of samples beside ``data.png`` (held-out images) that the training run
    draws, with the image judges' figures (class coverage, Fréchet distance:
    :func:`ebmcore.runs.field_images.image_sample_report`) under ``image_samples``.

    Args:
        field: A field without an energy.
        sampler_spec: ``{"name": ..., "params": {...}}`` of the flow sampler.
        settings: How to read the field (:meth:`ebmcore.Loss.flow_settings` of the loss
            that trained it); they go over ``sampler_spec``'s parameters.
        n: How many samples.
        out: The output folder (created; must be empty unless ``overwrite``).
        seed: Seeds the starting noise (and, on image data, the judges and the held-out
            picture).
        overwrite: Allow writing into a non-empty folder.
        dataset: The data set the field was trained on (``None``: unknown); an image data
            set (:class:`ebmcore.dataset.ImageDataset`) shapes the samples as its images and
            has them judged on its held-out split.

    Returns:
        The report written to ``diagnostics.json``.
    """
    import numpy as np

    from ebmcore import plot
    from ebmcore.runs.build import is_image_dataset
    from ebmcore.runs.folder import prepare_output_dir, versions, write_json

    images = dataset is not None and is_image_dataset(dataset)
    sampler = flow_sampler(sampler_spec, settings)
    prepare_output_dir(out, overwrite=overwrite)
    out = Path(out)
    samples, report = draw_flow(field, sampler, n, seed)
    if images:
        samples = samples.reshape(-1, *dataset.event_shape)
    report.update(sampler=component_block("sampler", sampler_spec), seed=seed,
                  event_shape=list(samples.shape[1:]), versions=versions())
    torch.save(samples, out / "samples.pt")
    np.save(out / "samples.npy", samples.numpy())
    plots = []
    finite = finite_rows(samples)
    if images:
        from ebmcore.runs.field_images import draw_image_samples, image_sample_report

        plots += [str(path) for path in draw_image_samples(samples, dataset, seed, out)]
        report["image_samples"] = image_sample_report(dataset, samples, seed=seed)
    elif tuple(samples.shape[1:]) == (2,) and finite.numel():
        bound = max(1.0, 1.2 * float(finite.abs().quantile(0.99)))
        plots.append(str(save_figure(plot.sample_scatter(finite, bounds=(-bound, bound)),
                                     out / "samples.png")))
    report["plots"] = plots
    write_json(out / "diagnostics.json", report)
    return report
