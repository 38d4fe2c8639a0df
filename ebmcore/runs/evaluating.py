"""Evaluating a saved model: exact 2-D figures, AIS bounds of ``log Z``, MMD and KSD, or the
image report for an image model."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.config import AIS_CHAINS, AIS_TEMPS, defaults_for
from ebmcore.dataset import Box
from ebmcore.evaluation.reference import ReferenceGaussian
from ebmcore.runs.build import evaluation_work, is_image_dataset
from ebmcore.runs.fields import is_flow_model
from ebmcore.runs.trained_model import run_box


def ais_budget(dataset: str, n_chains: int | None = None,
               n_temps: int | None = None) -> tuple[int, int]:
    """The AIS chains and temperatures to evaluate a model of ``dataset`` with.

    Each given figure wins; the rest come from the data set's recipe (its ``evaluate``
    section's ``ais_chains`` and ``ais_temps``, see :func:`ebmcore.config.defaults_for`),
    else :data:`ebmcore.config.AIS_CHAINS` and :data:`ebmcore.config.AIS_TEMPS`.
    """
    if n_chains is not None and n_temps is not None:
        return int(n_chains), int(n_temps)
    recipe = defaults_for(dataset).get("evaluate", {})
    return (int(n_chains or recipe.get("ais_chains", AIS_CHAINS)),
            int(n_temps or recipe.get("ais_temps", AIS_TEMPS)))


def evaluate_checkpoint(path: str | Path, *, n_test: int = 20000,
                        n_ais_chains: int | None = None, n_ais_temps: int | None = None,
                        resolution: int = 256,
                        bounds: Any = None, seed: int = 0,
                        threads: int | None = None) -> dict[str, Any]:
    """Evaluate a model saved by a training run: exact 2-D figures, AIS bounds, MMD and KSD.

    A field without an energy is scored as its run scored it instead
    (:func:`ebmcore.runs.fields.score_field`): the held-out flow log-likelihood, the
    histogram TV of its samples on 2-D data, and an MMD test of them.

    A model of an image data set gets :func:`ebmcore.evaluation.image_report.
    image_evaluation` instead (``image_evaluation`` in the report): AIS bounds of its
    held-out log-likelihood beside exact baselines, class coverage and MMD of its samples.

    The 2-D figures count the whole plane (see :func:`ebmcore.evaluate.grid_evaluation`): a
    model that is not a density gets "not normalisable" instead of a likelihood. The AIS
    base is the core's reference Gaussian
    (:class:`ebmcore.evaluation.reference.ReferenceGaussian`) centred on the evaluation box
    with the box's half-widths as its standard deviations, wide enough to reach the mass the
    grid counts outside the box.

    Args:
        path: ``model.pt`` from a run folder, or the run folder itself.
        n_test: Held-out points drawn from the run's data set.
        n_ais_chains: Annealing chains for the AIS bounds of ``log Z`` (``None``: the run's
            ``evaluate.ais_chains``, else the data set's recipe, else 500; see
            :func:`ais_budget`).
        n_ais_temps: Temperatures along the AIS path (``None``: the run's
            ``evaluate.ais_temps``, else the data set's recipe, else 1,000). 200 left the
            reverse estimate of the demo's model a nat below the grid's exact ``log Z``;
            1,000 brackets it.
        resolution: Grid cells per axis for the exact 2-D evaluation.
        bounds: The evaluation box, ``(low, high)`` for every coordinate or one pair per
            coordinate (``None``: the run's ``evaluate.bounds``, else the data set's
            :attr:`~ebmcore.Dataset.evaluation_box`, else one around the test points); its
            half-widths are the AIS base's scales.
        seed: Seeds every draw.
        threads: CPU threads for torch (and numba); ``None`` lets
            :func:`ebmcore.threads.fit_threads` choose for the size of the AIS batch.

    Raises:
        CheckpointError: When ``path`` is not a readable model file.
        ValueError: When the file records no data set.
    """
    from ebmcore.checkpoint import load_checkpoint_with_meta, model_from_payload
    from ebmcore.provenance import require_recorded
    from ebmcore.threads import fit_threads

    target = Path(path)
    if target.is_dir():
        target = target / "model.pt"
    payload, meta = load_checkpoint_with_meta(target)  # read once: the file may be large
    dataset_spec = meta.get("dataset")
    if not isinstance(dataset_spec, dict):
        raise ValueError(f"{str(target)!r} records no data set; was it written by a "
                         f"training run?")
    recorded = meta.get("provenance")
    if isinstance(recorded, dict):  # a missing plugin: name the distribution to install
        require_recorded({k: v for k, v in recorded.items() if k in ("model", "dataset")},
                         {"dataset": dataset_spec})
    model = model_from_payload(payload, meta, target).eval()
    dataset = ebmcore.create("dataset", dataset_spec["name"], **dataset_spec.get("params", {}))
    run_settings = _run_evaluate_settings(meta)
    n_chains, n_temps = ais_budget(dataset_spec["name"],
                                   n_ais_chains or run_settings.get("ais_chains"),
                                   n_ais_temps or run_settings.get("ais_temps"))
    # the annealing chains are the bulk of the work: size the threads for their batch
    fit_threads(threads, work=evaluation_work(model, n_chains))
    report: dict[str, Any] = {"checkpoint": str(target), "dataset": dataset_spec}
    if is_flow_model(model):
        return {**report, **_field_report(model, dataset, meta, n_test, bounds, seed)}
    if is_image_dataset(dataset):
        from ebmcore.evaluation.image_report import image_evaluation

        evaluation = image_evaluation(model, dataset, None, n_ais_chains=n_chains,
                                      n_ais_temps=n_temps, seed=seed)
        return {**report, "image_evaluation": evaluation.to_dict()}
    dtype = next(model.parameters()).dtype
    test_x = dataset.sample(n_test, generator=torch.Generator().manual_seed(seed)).to(dtype)
    box = run_box(bounds if bounds is not None else run_settings.get("bounds"), dataset, test_x)
    if tuple(dataset.event_shape) == (2,):
        from ebmcore.evaluate import grid_evaluation

        grid = grid_evaluation(model, dataset if dataset.has_log_prob else None, test_x,
                               bounds=box, resolution=resolution)
        report["grid"] = grid.to_dict()
    generator = torch.Generator().manual_seed(seed + 1)
    report.update(_ais_report(model, _ais_base(dataset, box, dtype), n_chains, n_temps,
                              generator, test_x, n_test))
    return report


def _field_report(field: Any, dataset: Any, meta: dict[str, Any], n_test: int, bounds: Any,
                  seed: int) -> dict[str, Any]:
    """Score a saved field without an energy as its run did
    (:func:`ebmcore.runs.fields.score_field`): sampled by the run's flow sampler, read as its
    loss says, on ``n_test`` fresh held-out points."""
    from ebmcore.runs.fields import saved_flow_settings, saved_run_config, score_field

    run_config = saved_run_config(meta)
    sampler = run_config.get("sampler")
    if not isinstance(sampler, dict) or not sampler.get("name"):
        raise ValueError("the model is a field and its file records no flow sampler to "
                         "sample it with; was it written by a training run?")
    dtype = next(field.parameters()).dtype
    test_x = dataset.sample(n_test, generator=torch.Generator().manual_seed(seed)).to(dtype)
    eval_cfg = dict(run_config.get("evaluate") or {})
    box = run_box(bounds if bounds is not None else eval_cfg.get("bounds"), dataset, test_x)
    n_samples = int((run_config.get("sample") or {}).get("n_chains", n_test))
    _, figures = score_field(field, dataset, saved_flow_settings(run_config), sampler,
                             eval_cfg, n_samples, test_x, box, seed)
    return figures


def _run_evaluate_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``[evaluate]`` section of the run that saved the model (its config.toml travels in
    the model file), or nothing for a file without one."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    text = meta.get("config_toml")
    try:
        section = tomllib.loads(text).get("evaluate") if isinstance(text, str) else None
    except tomllib.TOMLDecodeError:
        section = None  # a damaged copy: evaluate as a file without one
    return dict(section) if isinstance(section, dict) else {}


def _ais_base(dataset: Any, box: Box, dtype: torch.dtype) -> ReferenceGaussian:
    """The AIS start: the reference Gaussian centred on the box and as wide (sd = its
    half-widths), so its draws reach three times the box and the bounds see the mass the
    grid counts outside it."""
    pairs = torch.tensor(box, dtype=dtype)
    centre = (0.5 * (pairs[:, 0] + pairs[:, 1])).view(tuple(dataset.event_shape))
    return ReferenceGaussian(centre, std=0.5 * (pairs[:, 1] - pairs[:, 0]))


def _ais_report(model: Any, base: Any, n_chains: int, n_temps: int,
                generator: torch.Generator, test_x: torch.Tensor,
                n_test: int) -> dict[str, Any]:
    """Forward and reverse AIS between ``base`` and ``model``, and MMD and KSD of the AIS
    samples against the test data."""
    from ebmcore.evaluate import ais, ksd, mmd, reverse_ais

    lower = ais(model, base, n_chains=n_chains, n_temps=n_temps, generator=generator)
    upper = reverse_ais(model, lower.samples, base, n_temps=n_temps, generator=generator)
    report: dict[str, Any] = {"ais": {
        "log_z_lower": lower.log_z, "lower_stderr": lower.stderr, "lower_ess": lower.ess,
        "log_z_upper_approx": upper.log_z, "upper_stderr": upper.stderr,
        "upper_ess": upper.ess, "n_chains": n_chains, "n_temps": n_temps,
        "note": "the upper bound starts from AIS samples, not exact draws, so it is approximate",
    }}
    if upper.log_z + 3 * upper.stderr < lower.log_z - 3 * lower.stderr:
        # only exact model samples make reverse AIS an upper bound; below the lower bound
        # it shows that the forward chains had not reached the model
        report["ais"]["warning"] = (
            f"the reverse AIS estimate {upper.log_z:.4g} lies below the lower bound "
            f"{lower.log_z:.4g}: the forward chains were not yet model samples, so the upper "
            f"figure is no bound; raise the temperatures (now {n_temps})")
    n = min(1000, n_test, lower.samples.shape[0])
    samples = lower.samples[:n].detach()
    report["mmd_ais_samples_vs_data"] = asdict(mmd(samples.double(), test_x[:n].double(),
                                                 n_permutations=200, generator=generator))
    report["ksd_data_vs_model"] = asdict(ksd(test_x[:n], model, generator=generator))
    return report
