"""The end of a training run: sample the trained model and evaluate it against its data.

A model of vector data gets the exact 2-D evaluation where the data is 2-D (whole-plane
NLL, KL, TV and the density plot), samples drawn as the run's ``[sample]`` section says, and
an MMD test of those samples against held-out data; an image model goes to
:mod:`ebmcore.runs.images`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ebmcore.dataset import Box, Dataset
from ebmcore.runs.build import is_image_dataset
from ebmcore.runs.chains import (
    DEFAULT_TRACE_CHAINS,
    RUN_FIX,
    chain_diagnostics,
    finite_chains,
    finite_rows,
)
from ebmcore.runs.folder import save_figure


def evaluate_and_sample(model: Any, dataset: Any, sampler: Any, config: dict[str, Any],
                        seed: int, out: Path, progress: bool) -> dict[str, Any]:
    """Sample and evaluate a trained model; write ``samples.pt`` and the plots into ``out``.

    Args:
        model: The trained energy (in eval mode).
        dataset: The run's data set.
        sampler: The run's sampler.
        config: The run's resolved configuration (its ``evaluate`` and ``sample`` sections).
        seed: The run's seed; every draw here derives its own stream from it.
        out: The run folder.
        progress: Show a progress bar on a terminal.

    Returns:
        The metrics to merge into ``metrics.json``: ``evaluation`` (2-D data) or
        ``image_evaluation``, ``sampling`` and ``evaluate_seconds``.
    """
    if is_image_dataset(dataset):
        from ebmcore.runs.images import evaluate_images

        return evaluate_images(model, dataset, sampler, config, seed, out, progress)
    from ebmcore import plot
    from ebmcore.evaluate import grid_evaluation, mmd

    eval_cfg, sample_cfg = config["evaluate"], config["sample"]
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    test_generator = torch.Generator().manual_seed(seed + 10_000)
    test_x = dataset.sample(int(eval_cfg["n_test"]), generator=test_generator)
    box = run_box(eval_cfg.get("bounds"), dataset, test_x)
    result: dict[str, Any] = {}
    started = time.perf_counter()
    two_d = tuple(dataset.event_shape) == (2,)
    if two_d:
        evaluation = grid_evaluation(
            model, dataset if dataset.has_log_prob else None, test_x.to(device, dtype),
            bounds=box, resolution=int(eval_cfg["resolution"]))
        result["evaluation"] = evaluation.to_dict()
        save_figure(plot.energy_contours(model, test_x, bounds=box), out / "density.png")

    x0 = uniform_points(int(sample_cfg["n_chains"]), tuple(dataset.event_shape), box,
                        torch.Generator().manual_seed(seed + 30_000), dtype, device)
    finite, trajectory, sample_metrics = draw_samples(model, sampler, x0, sample_cfg, seed,
                                                      out, progress)
    n_compare = min(2000, finite.shape[0], test_x.shape[0])
    if n_compare >= 10:
        test = mmd(finite[:n_compare].cpu().double(), test_x[:n_compare].double(),
                   n_permutations=200, generator=torch.Generator().manual_seed(seed + 40_000))
        sample_metrics["mmd_to_test_data"] = asdict(test)
    result["sampling"] = sample_metrics
    if two_d:
        save_figure(plot.sample_scatter(finite.cpu(), model, bounds=box), out / "samples.png")
    save_figure(plot.trace_plot(finite_chains(trajectory)), out / "trace.png")
    result["evaluate_seconds"] = time.perf_counter() - started
    return result


def run_box(bounds: Any, dataset: Dataset, test_x: torch.Tensor) -> Box:
    """The box a run evaluates on and starts its chains in, one ``(low, high)`` per
    coordinate: the run's ``evaluate.bounds`` (a pair for every coordinate, or one pair per
    coordinate) when set, else the data set's declared box, else one around ``test_x``
    (:func:`ebmcore.evaluation.box.evaluation_box`)."""
    from ebmcore.evaluation.box import check_box, evaluation_box

    if bounds is None:
        return evaluation_box(dataset, test_x)
    try:
        return check_box(bounds, dim=math.prod(dataset.event_shape))
    except ValueError as exc:
        raise ValueError(f"evaluate.{exc}") from None


def uniform_points(n: int, event_shape: tuple[int, ...], box: Any,
                   generator: torch.Generator, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """``n`` points drawn uniformly from ``box``: one ``(low, high)`` per coordinate, or one
    pair for all (drawn on the CPU, so the stream is the same on every device)."""
    from ebmcore.evaluation.box import check_box

    pairs = torch.tensor(check_box(box, dim=math.prod(event_shape)), dtype=dtype)
    low, high = pairs[:, 0].view(event_shape), pairs[:, 1].view(event_shape)
    x = torch.rand((n, *event_shape), generator=generator, dtype=dtype)
    return (low + (high - low) * x).to(device)


def draw_samples(model: Any, sampler: Any, x0: torch.Tensor, sample_cfg: dict[str, Any],
                 seed: int, out: Path, progress: bool
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Sample the trained model from ``x0`` as ``[sample]`` says (with ``sample.sampler``
    where it names one, else ``sampler``); save ``samples.pt``.

    Returns the finite samples, the traced chains' trajectory (on the CPU) and the
    sampling metrics (backend, time, non-finite chains, R-hat and ESS).
    """
    from ebmcore.runs.sampling import writing_sampler
    from ebmcore.validation import check_int

    sampler = writing_sampler(model, sampler, sample_cfg)
    device = x0.device
    generator = torch.Generator(device=device).manual_seed(seed + 20_000)
    trace_chains = check_int("sample.trace_chains",
                             sample_cfg.get("trace_chains", DEFAULT_TRACE_CHAINS), minimum=1)
    sampled = sampler.sample(model, x0, int(sample_cfg["n_steps"]),
                             burn_in=int(sample_cfg["burn_in"]), thin=int(sample_cfg["thin"]),
                             generator=generator, return_trajectory=True,
                             trace_chains=trace_chains, backend=str(sample_cfg["backend"]),
                             progress=progress)
    samples = sampled.samples.detach()
    torch.save(samples.cpu(), out / "samples.pt")
    trajectory = sampled.trajectory.detach().cpu()
    metrics: dict[str, Any] = {
        "backend": sampled.diagnostics.get("backend"),
        "seconds": sampled.diagnostics.get("seconds"),
        "nonfinite_chains": int(sampled.diagnostics["nonfinite_chains"].numel())
        if "nonfinite_chains" in sampled.diagnostics else None,
        "chains": chain_diagnostics(
            trajectory, total_chains=int(samples.shape[0]),
            stride=int(sampled.diagnostics.get("trajectory_stride", 1)), fix=RUN_FIX),
    }
    return finite_rows(samples), trajectory, metrics
