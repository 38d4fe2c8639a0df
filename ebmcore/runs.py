"""The main jobs behind the command line: train, sample and evaluate, each into a run folder.

Each function takes a resolved configuration (see :mod:`ebmcore.config`), writes its outputs
into a folder and returns the metrics it wrote, so the CLI stays a thin layer over it.
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.config import (
    AIS_CHAINS,
    AIS_TEMPS,
    IMAGE_RECIPE,
    check_train_config,
    dump_toml,
    resolved_params,
    signature_parameter,
)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def prepare_output_dir(path: str | Path, *, overwrite: bool = False) -> Path:
    """Create ``path`` (and parents), check it is writable, and refuse to clobber a run.

    Raises:
        OSError: When the folder cannot be created or written.
        FileExistsError: When it already holds a run and ``overwrite`` is false.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {str(out)!r} is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {str(out)!r} is not empty; choose another --out or pass --overwrite"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ebmcore-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"cannot write to output folder {str(out)!r}: "
                      f"{exc.strerror or exc}") from None
    return out


def versions() -> dict[str, str]:
    """Versions of the software a run used, for its metrics file."""
    from importlib import metadata

    found = {"ebmcore": ebmcore.__version__, "torch": torch.__version__,
             "python": platform.python_version()}
    for dist in ("numba", "pluggy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def _component_config(kind: str, block: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(block, dict) or not block.get("name"):
        raise ValueError(f"the [{kind}] section needs a component name")
    params = block.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"[{kind}.params] must be a table of parameters")
    return {"name": block["name"], "params": dict(params)}


def build_training(config: dict[str, Any]) -> dict[str, Any]:
    """Create the data set, model, sampler and loss a configuration names.

    Returns a dict with the objects and ``config``: the input with every component's
    parameters completed by its signature's defaults (the fully resolved configuration).
    """
    check_train_config(config)
    resolved = dict(config)
    device = torch.device(config.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")

    dataset_cfg = _component_config("dataset", config["dataset"])
    dataset = ebmcore.create("dataset", dataset_cfg["name"], **dataset_cfg["params"])

    model_cfg = _component_config("model", config["model"])
    model_target = ebmcore.get("model", model_cfg["name"])
    model_cfg["params"] = {**_shape_params(model_target, dataset), **model_cfg["params"]}
    model = ebmcore.create("model", model_cfg["name"], **model_cfg["params"]).to(device)

    sampler_cfg = _component_config("sampler", config["sampler"])
    sampler = ebmcore.create("sampler", sampler_cfg["name"], **sampler_cfg["params"])

    loss_cfg = _component_config("loss", config["loss"])
    loss_target = ebmcore.get("loss", loss_cfg["name"])
    loss_params = dict(loss_cfg["params"])
    if signature_parameter(loss_target, "sampler") is not None:
        loss_params["sampler"] = sampler
    loss = ebmcore.create("loss", loss_cfg["name"], **loss_params)

    for kind, block, target in (
        ("dataset", dataset_cfg, ebmcore.get("dataset", dataset_cfg["name"])),
        ("model", model_cfg, model_target),
        ("sampler", sampler_cfg, ebmcore.get("sampler", sampler_cfg["name"])),
        ("loss", loss_cfg, loss_target),
    ):
        resolved[kind] = {"name": block["name"],
                          "params": resolved_params(target, block["params"])}
    return {"dataset": dataset, "model": model, "sampler": sampler, "loss": loss,
            "device": device, "config": resolved}


def _shape_params(model_target: Any, dataset: Any) -> dict[str, Any]:
    """The size parameters a model takes that the data set's event shape fixes: ``dim`` for
    vectors, ``in_channels`` and ``image_size`` for images ``(C, H, W)``."""
    event = tuple(int(s) for s in getattr(dataset, "event_shape", ()))
    if len(event) == 1:
        wanted = {"dim": event[0]}
    elif len(event) == 3:
        wanted = {"in_channels": event[0], "image_size": list(event[1:])}
    else:
        wanted = {}
    return {name: value for name, value in wanted.items()
            if signature_parameter(model_target, name) is not None}


def is_image_dataset(dataset: Any) -> bool:
    """Whether ``dataset`` is an image data set with a held-out split (``digits``, ``mnist``)."""
    return len(tuple(getattr(dataset, "event_shape", ()))) == 3 and callable(
        getattr(dataset, "held_out", None))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _scalar_summary(values: torch.Tensor) -> dict[str, float]:
    values = values.double().flatten()
    return {"min": float(values.min()), "median": float(values.median()),
            "max": float(values.max())}


#: Chains whose trajectory ``ebmcore sample`` and training runs record for R-hat, ESS and the
#: chain plots (``--trace-chains``, ``sample.trace_chains``): memory then grows with this
#: number times the kept steps, not with the number of chains sampled.
DEFAULT_TRACE_CHAINS = 1000


def chain_diagnostics(trajectory: torch.Tensor, *, total_chains: int | None = None,
                      stride: int = 1) -> dict[str, Any]:
    """R-hat, bulk and tail ESS per coordinate of a trajectory ``(T, C, *event)``.

    Chains with a non-finite draw are left out (the sampler reports them, never replaces
    them); the rest are diagnosed together. The report says what was used: ``n_chains``
    and ``n_draws`` (per chain) went into the figures, ``n_nonfinite_chains`` were left out,
    of the ``traced_chains`` recorded, which were chains ``0, s, 2s, ...``
    (``s = chain_stride``) of the ``total_chains`` sampled. ``rhat``, ``ess_bulk`` and
    ``ess_tail`` are ``None`` (with a ``note``) when no chain is finite or a chain holds
    fewer than 4 draws.

    Args:
        trajectory: Kept positions, steps first (``SampleResult.trajectory``).
        total_chains: Chains sampled, when the trajectory records a subset of them.
        stride: The subset's stride (``SampleResult.diagnostics["trajectory_stride"]``).
    """
    from ebmcore import diagnostics

    draws = diagnostics.from_trajectory(trajectory)
    finite = torch.isfinite(draws.flatten(1)).all(1)
    used = draws[finite] if not bool(finite.all()) else draws
    report: dict[str, Any] = {
        "n_chains": int(used.shape[0]), "n_draws": int(draws.shape[1]),
        "n_nonfinite_chains": int(draws.shape[0] - used.shape[0]),
        "traced_chains": int(draws.shape[0]), "chain_stride": int(stride),
        "total_chains": int(draws.shape[0] if total_chains is None else total_chains),
        "rhat": None, "ess_bulk": None, "ess_tail": None,
    }
    if used.shape[0] == 0:
        report["note"] = "every traced chain turned non-finite; nothing to diagnose"
    elif draws.shape[1] < diagnostics.MIN_DRAWS:
        report["note"] = (f"{draws.shape[1]} kept draws per chain; R-hat and ESS need at "
                          f"least {diagnostics.MIN_DRAWS}")
    else:
        report.update(rhat=_scalar_summary(diagnostics.rhat(used)),
                      ess_bulk=_scalar_summary(diagnostics.ess_bulk(used)),
                      ess_tail=_scalar_summary(diagnostics.ess_tail(used)))
    return report


def _initial_points(n: int, event_shape: tuple[int, ...], bounds: list[float],
                    generator: torch.Generator, dtype: torch.dtype,
                    device: torch.device) -> torch.Tensor:
    low, high = float(bounds[0]), float(bounds[1])
    x = torch.rand((n, *event_shape), generator=generator, dtype=dtype)
    return (low + (high - low) * x).to(device)


def _save_figure(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def train_run(config: dict[str, Any], out: str | Path, *, progress: bool = False,
              log: Log = _quiet, overwrite: bool = False,
              distributed: bool = False) -> dict[str, Any]:
    """Train, then sample and evaluate the model, writing a run folder.

    The folder gets ``checkpoints/`` (full trainer state), ``model.pt`` (weights and how to
    rebuild them), ``config.toml`` (the resolved configuration), ``metrics.json`` and PNG
    plots. Ctrl-C (SIGINT) or SIGTERM during training stops it at the end of the current
    step, writes a final checkpoint and returns with ``metrics["interrupted"] = True`` and
    ``metrics["stopped_by"]`` naming the signal; :func:`resume_run` continues the run. A
    second signal stops at once (mid-step: no checkpoint is written then, since that state
    would not resume exactly).

    Args:
        config: A configuration such as :data:`ebmcore.config.TRAIN_DEFAULTS`.
        out: The run folder (created; must be empty unless ``overwrite``).
        progress: Show progress bars on a terminal.
        log: Receives one line per stage.
        overwrite: Allow writing into a non-empty folder.
        distributed: Train on every rank of the initialised process group
            (``Trainer(distributed=True)``; every rank calls this alike). Rank 0 alone writes
            the folder and then samples and evaluates the model; the other ranks return
            after training, with the training metrics.

    Raises:
        TrainingDivergedError: When a training step produced non-finite values.
    """
    ranks = _ranks(distributed)
    ranks.main_first(lambda: prepare_output_dir(out, overwrite=overwrite))
    out = Path(out)
    trainer, built, seed = _build_trainer(config, out, progress, distributed)
    resolved = built["config"]
    if not ranks.is_main:
        log = _quiet
    else:
        (out / "config.toml").write_text(dump_toml(resolved), encoding="utf-8")
    log(f"training {resolved['model']['name']} on {resolved['dataset']['name']} with "
        f"{resolved['loss']['name']} + {resolved['sampler']['name']} for {trainer.steps} steps")
    return _finish_run(trainer, built, seed, out, progress, log, resumed_from=None)


def resume_run(folder: str | Path, *, progress: bool = False, log: Log = _quiet,
               warn: Log = _stderr, distributed: bool = False) -> dict[str, Any] | None:
    """Continue a run folder written by :func:`train_run` from its newest readable checkpoint.

    The run is rebuilt from the folder's ``config.toml``; the trainer resumes from the newest
    ``checkpoints/step-*.pt`` that loads (unreadable newer ones, such as a file cut short, are
    skipped, each reported through ``warn``) and trains to the configured steps. Then the
    outputs :func:`train_run` writes (``model.pt``, ``metrics.json``, samples and plots) are
    written over the interrupted run's; nothing else in the folder is touched. The result
    equals an uninterrupted run's: the checkpoint restores every random stream.

    Args:
        folder: The run folder.
        progress: Show progress bars on a terminal.
        log: Receives one line per stage.
        warn: Receives one line per skipped checkpoint.
        distributed: Continue on every rank of the initialised process group, however many
            ranks wrote the checkpoint (its chains are re-split); every rank reads the
            folder, so on several machines it must be on a shared file system.

    Returns:
        The metrics written, with ``resumed_from`` (``checkpoint`` path and ``step``), or
        ``None`` when the run had already finished: its checkpoints reach the configured steps
        and its ``metrics.json`` records a completed run (nothing is written then).

    Raises:
        FileNotFoundError: When ``folder`` or its ``config.toml`` does not exist.
        CheckpointError: When the folder holds no checkpoint, or none that loads.
    """
    from ebmcore.config import complete_run, load_toml
    from ebmcore.errors import CheckpointError

    out = Path(folder)
    if not _ranks(distributed).is_main:
        log = warn = _quiet
    candidates = resumable_checkpoints(out)
    config_file = out / "config.toml"
    again = f"ebmcore train --config {config_file} --out {out} --overwrite"
    # the same merge as --config, so a resumed run is built exactly as a replayed one
    saved = load_toml(config_file)
    config = complete_run(saved)
    trainer, built, seed = _build_trainer(config, out, progress, distributed)
    used = None
    for candidate in candidates:
        try:
            used = trainer.resume(candidate)
        except CheckpointError as exc:
            warn(f"skipping unreadable checkpoint: {exc}")
            continue
        break
    if used is None:
        raise CheckpointError(f"no checkpoint in {str(out / 'checkpoints')!r} can be read; "
                              f"start the run again: {again}")
    if trainer.step >= trainer.steps and _completed(out / "metrics.json", trainer.steps):
        return None
    log(f"resuming {str(out)!r} from {used.name} (step {trainer.step} of {trainer.steps})")
    return _finish_run(trainer, built, seed, out, progress, log,
                       resumed_from={"checkpoint": str(used), "step": trainer.step})


def resumable_checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoints a run folder offers to :func:`resume_run`, newest first.

    Raises:
        FileNotFoundError: When ``folder`` or its ``config.toml`` does not exist.
        CheckpointError: When the folder holds no checkpoint.
    """
    from ebmcore.errors import CheckpointError
    from ebmcore.train import CHECKPOINT_GLOB

    out = Path(folder)
    if not out.is_dir():
        raise FileNotFoundError(f"run folder {str(out)!r} to resume does not exist")
    config_file = out / "config.toml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(out)!r} holds no config.toml; --resume takes a run "
                                f"folder written by ebmcore train")
    candidates = sorted((out / "checkpoints").glob(CHECKPOINT_GLOB), reverse=True)
    if not candidates:
        raise CheckpointError(f"{str(out)!r} holds no checkpoints (checkpoints/"
                              f"{CHECKPOINT_GLOB}) to resume from; start the run again: "
                              f"ebmcore train --config {config_file} --out {out} --overwrite")
    return candidates  # names are zero-padded: newest first


def _completed(metrics_file: Path, steps: int) -> bool:
    """Whether ``metrics.json`` records a run that trained all ``steps`` uninterrupted."""
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # killed after its last checkpoint, before its outputs: finish them
    return (isinstance(metrics, dict) and metrics.get("interrupted") is False
            and metrics.get("steps_done") == steps)


def _ranks(distributed: bool) -> Any:
    """The process group a run uses: the initialised one, or this process alone."""
    from ebmcore.distributed import RankGroup

    return RankGroup.current("a distributed run") if distributed else RankGroup()


def _build_trainer(config: dict[str, Any], out: Path, progress: bool,
                   distributed: bool = False) -> tuple[Any, dict, int]:
    """Seed, build the components and the trainer of a run writing checkpoints into ``out``."""
    from ebmcore.train import Trainer

    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    built = build_training(config)
    train_cfg = dict(built["config"].get("train", {}))
    picture_every = train_cfg.pop("picture_every", None)
    main = _ranks(distributed).is_main
    callbacks = []
    if picture_every is not None and is_image_dataset(built["dataset"]) and main:
        callbacks.append(ReplayPictures(out / "pictures", int(picture_every)))
    trainer = Trainer(built["model"], built["loss"], data=built["dataset"],
                      steps=int(train_cfg.pop("steps")),
                      batch_size=int(train_cfg.pop("batch_size")),
                      checkpoint_dir=out / "checkpoints", progress=progress and main, seed=seed,
                      callbacks=callbacks, distributed=distributed, **train_cfg)
    return trainer, built, seed


class ReplayPictures:
    """A training callback that draws the chains' states every ``every`` steps.

    It writes ``replay-step-XXXXXXXXX.png`` into ``folder``: a grid of the first 64 states
    of the loss's replay buffer (``pcd``), or of the step's negatives for losses without
    one, on the data's ``[0, 1]`` scale, so a run shows how its samples formed.

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

        buffer = getattr(trainer.loss, "buffer", None)
        states = buffer if isinstance(buffer, torch.Tensor) and buffer.numel() else None
        states = output.negatives if states is None else states
        if states is None or states.dim() != 4:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        _save_figure(plot.image_grid(states[:64].detach().cpu(), value_range=(0.0, 1.0)),
                     self.folder / f"replay-step-{trainer.step:09d}.png")


@contextlib.contextmanager
def _stop_on_signals(trainer: Any, stopped: dict[str, str]) -> Iterator[None]:
    """While training, SIGINT and SIGTERM ask ``trainer`` to stop at the end of its step.

    Stopping at a step boundary keeps the final checkpoint exact (a signal raising
    mid-step could leave the weights updated and the step count not). A second signal
    raises ``KeyboardInterrupt`` at once. The previous handlers are restored afterwards.
    Signal handlers can only be set in the main thread; elsewhere nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stopped:
            raise KeyboardInterrupt
        stopped["signal"] = signal.Signals(signum).name
        trainer.request_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            # None: a handler not set from Python, which cannot be put back; use the default
            signal.signal(sig, signal.SIG_DFL if old is None else old)


def _finish_run(trainer: Any, built: dict[str, Any], seed: int, out: Path, progress: bool,
                log: Log, resumed_from: dict[str, Any] | None) -> dict[str, Any]:
    """Train to the end (or a signal), then write model.pt, metrics.json and the plots."""
    from ebmcore.checkpoint import save_model

    resolved = built["config"]
    start_step = trainer.step
    stopped: dict[str, str] = {}
    started = time.perf_counter()
    try:
        with _stop_on_signals(trainer, stopped):
            trainer.fit()
    except KeyboardInterrupt:
        stopped.setdefault("signal", "SIGINT")
        if trainer.in_step:
            log(f"interrupted during step {trainer.step + 1}; no checkpoint written (a "
                f"half-done step would not resume exactly)")
        elif trainer.world_size > 1:
            log("interrupted at once; no checkpoint written (the other ranks may be at "
                "another step)")
        else:
            trainer.check_finite()  # never leave a diverged state as the newest checkpoint
            trainer.save_checkpoint()
    train_seconds = time.perf_counter() - started
    # a signal during the last step still means "stop": skip the (long) evaluation
    interrupted = bool(stopped) or trainer.step < trainer.steps
    if interrupted:
        log(f"stopped by {stopped.get('signal', 'request')} at step {trainer.step}; last "
            f"checkpoint: {trainer.last_checkpoint}")

    metrics: dict[str, Any] = {
        "seed": seed, "interrupted": interrupted, "stopped_by": stopped.get("signal"),
        "steps_done": trainer.step, "resumed_from": resumed_from,
        "last_checkpoint": None if trainer.last_checkpoint is None
        else str(trainer.last_checkpoint),
        "runaway": trainer.runaway,  # the first logged step whose energies ran away, or None
        "skipped_steps": trainer.skipped_steps,  # non-finite steps skipped (skip_nonfinite)
        "history": trainer.history, "versions": versions(),
        "timings": {"train_seconds": train_seconds,
                    "seconds_per_step": train_seconds / max(trainer.step - start_step, 1)},
        "world_size": trainer.world_size,
    }
    if trainer.rank != 0:
        return metrics  # the other ranks' work ends with training: rank 0 writes the folder
    model = trainer.ema_model or built["model"]
    model.eval()
    spec = {"kind": "model", "name": resolved["model"]["name"],
            "params": resolved["model"]["params"]}
    save_model(out / "model.pt", model, spec=spec,
               meta={"dataset": resolved["dataset"], "config_toml": dump_toml(resolved)})
    if not interrupted:
        log("evaluating and sampling the trained model")
        metrics.update(_evaluate_and_sample(model, built["dataset"], built["sampler"],
                                            resolved, seed, out, progress))
    # wall-clock seconds are in metrics.json; the figure shows what the model learned
    history = {k: [row[k] for row in trainer.history if k in row]
               for k in (trainer.history[0] if trainer.history else {}) if k != "seconds"}
    if history:
        from ebmcore import plot

        _save_figure(plot.training_curves(history), out / "training.png")
    _write_json(out / "metrics.json", metrics)
    return metrics


def _evaluate_and_sample(model: Any, dataset: Any, sampler: Any, config: dict[str, Any],
                         seed: int, out: Path, progress: bool) -> dict[str, Any]:
    if is_image_dataset(dataset):
        return _evaluate_images(model, dataset, sampler, config, seed, out, progress)
    from ebmcore import plot
    from ebmcore.evaluate import grid_evaluation, mmd

    eval_cfg, sample_cfg = config["evaluate"], config["sample"]
    bounds = [float(b) for b in eval_cfg["bounds"]]
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    test_generator = torch.Generator().manual_seed(seed + 10_000)
    test_x = dataset.sample(int(eval_cfg["n_test"]), generator=test_generator)
    result: dict[str, Any] = {}
    started = time.perf_counter()
    two_d = tuple(dataset.event_shape) == (2,)
    if two_d:
        evaluation = grid_evaluation(
            model, dataset if dataset.has_log_prob else None, test_x.to(device, dtype),
            bounds=bounds, resolution=int(eval_cfg["resolution"]))
        result["evaluation"] = evaluation.to_dict()
        _save_figure(plot.energy_contours(model, test_x, bounds=bounds), out / "density.png")

    x0 = _initial_points(int(sample_cfg["n_chains"]), tuple(dataset.event_shape), bounds,
                         torch.Generator().manual_seed(seed + 30_000), dtype, device)
    finite, trajectory, sample_metrics = _draw_samples(model, sampler, x0, sample_cfg, seed,
                                                       out, progress)
    n_compare = min(2000, finite.shape[0], test_x.shape[0])
    if n_compare >= 10:
        test = mmd(finite[:n_compare].cpu().double(), test_x[:n_compare].double(),
                   n_permutations=200, generator=torch.Generator().manual_seed(seed + 40_000))
        sample_metrics["mmd_to_test_data"] = asdict(test)
    result["sampling"] = sample_metrics
    if two_d:
        _save_figure(plot.sample_scatter(finite.cpu(), model, bounds=bounds),
                     out / "samples.png")
    _save_figure(plot.trace_plot(_finite_chains(trajectory)), out / "trace.png")
    result["evaluate_seconds"] = time.perf_counter() - started
    return result


def _draw_samples(model: Any, sampler: Any, x0: torch.Tensor, sample_cfg: dict[str, Any],
                  seed: int, out: Path, progress: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Sample the trained model from ``x0`` as ``[sample]`` says; save ``samples.pt``.

    Returns the finite samples, the traced chains' trajectory (on the CPU) and the
    sampling metrics (backend, time, non-finite chains, R-hat and ESS).
    """
    from ebmcore.validation import check_int

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
            stride=int(sampled.diagnostics.get("trajectory_stride", 1))),
    }
    finite = samples[torch.isfinite(samples.flatten(1)).all(1)]
    return finite, trajectory, metrics


def _evaluate_images(model: Any, dataset: Any, sampler: Any, config: dict[str, Any],
                     seed: int, out: Path, progress: bool) -> dict[str, Any]:
    """Sample an image model from its Gaussian base (uniform noise on ``[0, 1]`` without
    one), judge it on the held-out split (:func:`ebmcore.evaluation.image_report.
    image_evaluation`) and draw samples, held-out images and one chain's evolution."""
    from ebmcore import plot
    from ebmcore.evaluation.image_report import image_evaluation

    eval_cfg, sample_cfg = config["evaluate"], config["sample"]
    ais_cfg = {**IMAGE_RECIPE["evaluate"], **eval_cfg}  # a config.toml may leave them out
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    started = time.perf_counter()
    n_chains = int(sample_cfg["n_chains"])
    start_generator = torch.Generator().manual_seed(seed + 30_000)
    base = getattr(model, "base_energy", lambda: None)()
    if base is not None:
        x0 = base.sample(n_chains, start_generator).to(device, dtype)
    else:
        x0 = _initial_points(n_chains, tuple(dataset.event_shape), [0.0, 1.0],
                             start_generator, dtype, device)
    finite, trajectory, sample_metrics = _draw_samples(model, sampler, x0, sample_cfg, seed,
                                                       out, progress)
    evaluation = image_evaluation(model, dataset, finite,
                                  n_ais_chains=int(ais_cfg["ais_chains"]),
                                  n_ais_temps=int(ais_cfg["ais_temps"]), seed=seed)
    sample_metrics["mmd_to_test_data"] = evaluation.mmd
    shown = (0.0, 1.0)
    _save_figure(plot.image_grid(finite.cpu(), value_range=shown), out / "samples.png")
    held_out = dataset.held_out().sample(64, torch.Generator().manual_seed(seed + 50_000))
    _save_figure(plot.image_grid(held_out, value_range=shown), out / "data.png")
    chains = _finite_chains(trajectory)
    _save_figure(plot.chain_strip(chains[:, 0], value_range=shown), out / "chain.png")
    return {"image_evaluation": evaluation.to_dict(), "sampling": sample_metrics,
            "evaluate_seconds": time.perf_counter() - started}


def _finite_chains(trajectory: torch.Tensor) -> torch.Tensor:
    """The chains (columns) of ``trajectory`` whose draws are all finite, or all if none is."""
    finite = torch.isfinite(trajectory.flatten(2)).all(2).all(0)
    return trajectory[:, finite] if bool(finite.any()) else trajectory


#: The plots' axis range comes from at most this many samples (torch.quantile's input is
#: limited to 2**24 values, and a range needs no more).
_SPREAD_POINTS = 100_000


def _plot_chains(trajectory: torch.Tensor, samples: torch.Tensor, energy: Any,
                 out: Path) -> list[str]:
    """Trace, rank and autocorrelation plots of the traced chains (the finite ones), and a
    picture of the samples."""
    from ebmcore import plot

    shown = _finite_chains(trajectory)
    written = [
        _save_figure(plot.trace_plot(shown), out / "trace.png"),
        _save_figure(plot.rank_plot(shown), out / "rank.png"),
        _save_figure(plot.autocorrelation_plot(shown), out / "autocorrelation.png"),
    ]
    event = tuple(samples.shape[1:])
    finite = samples[torch.isfinite(samples.flatten(1)).all(1)]
    if event == (2,):
        spread = (float(finite[:_SPREAD_POINTS].abs().quantile(0.99)) if finite.numel()
                  else 4.0)
        bound = max(1.0, 1.2 * spread)
        written.append(_save_figure(
            plot.sample_scatter(finite, energy, bounds=(-bound, bound)), out / "samples.png"))
    elif len(event) == 3 and event[0] in (1, 3):
        written.append(_save_figure(plot.image_grid(finite), out / "samples.png"))
    return [str(p) for p in written]


def load_energy(spec: dict[str, Any] | None, checkpoint: str | Path | None,
                device: torch.device) -> Any:
    """Build the energy to sample: a registry component from ``spec`` or a saved model."""
    if (spec is None) == (checkpoint is None):
        raise ValueError("give exactly one of an energy name (--energy) or --checkpoint")
    if checkpoint is not None:
        from ebmcore.checkpoint import build_model

        energy = build_model(checkpoint)
        energy.eval()
    else:
        block = _component_config("energy", spec)
        energy = ebmcore.create("energy", block["name"], **block["params"])
    return energy.to(device)


def sample_run(energy: Any, sampler_spec: dict[str, Any], settings: dict[str, Any],
               out: str | Path, *, seed: int = 0, progress: bool = False,
               overwrite: bool = False, distributed: bool = False) -> dict[str, Any]:
    """Sample ``energy`` and write samples (``.pt``, ``.npy``), diagnostics and plots.

    Memory stays bounded whatever the run's size: the chains' positions, per-chain counts,
    and the trajectory of ``trace_chains`` chains only (chains ``0, s, 2s, ...``, see
    :meth:`ebmcore.Sampler.sample`), on which R-hat, ESS and the chain plots are computed;
    ``diagnostics.json`` says how many chains and draws they used (``chains``). With
    ``save_trajectory`` every chain's kept steps go to ``trajectory.npy``
    ``(T, B, *event_shape)``, written step by step as the chains run (torch backend; see
    :class:`ebmcore.sampler.TrajectoryFile`), never held whole in memory.

    Args:
        energy: An :class:`ebmcore.Energy`.
        sampler_spec: ``{"name": ..., "params": {...}}`` of the sampler.
        settings: ``n_chains``, ``n_steps``, ``burn_in``, ``thin``, ``backend``, ``init_scale``,
            ``trace_chains`` (default :data:`DEFAULT_TRACE_CHAINS`), ``save_trajectory``
            (default false) and, for energies without an ``event_shape``, ``dim``.
        out: The output folder (created; must be empty unless ``overwrite``).
        seed: Seeds the initial points and the sampler.
        progress: Show a progress bar on a terminal.
        overwrite: Allow writing into a non-empty folder.
        distributed: Split the chains over the ranks of the initialised process group
            (``Sampler.sample(distributed=True)``; every rank calls this alike). Every rank
            returns the report; rank 0 writes the folder, except that with
            ``save_trajectory`` each rank writes its own chains' columns of
            ``trajectory.npy`` (on several machines the folder must then be shared).
    """
    import numpy as np

    from ebmcore.validation import check_int

    for key, minimum in (("n_chains", 1), ("n_steps", 1), ("burn_in", 0), ("thin", 1)):
        if key in settings:
            check_int(f"settings[{key!r}]", settings[key], minimum=minimum)
    trace_chains = check_int("settings['trace_chains'] (--trace-chains)",
                             settings.get("trace_chains", DEFAULT_TRACE_CHAINS), minimum=1)
    save_trajectory = settings.get("save_trajectory", False)
    if not isinstance(save_trajectory, bool):
        raise TypeError(f"settings['save_trajectory'] (--save-trajectory) must be true or "
                        f"false, got {save_trajectory!r}")
    n_steps, thin = int(settings["n_steps"]), int(settings.get("thin", 1))
    if n_steps // thin == 0:
        raise ValueError(f"settings['n_steps'] (--steps) {n_steps} with settings['thin'] "
                         f"(--thin) {thin} keeps no step; give at least {thin} steps")
    backend = str(settings.get("backend", "auto"))
    if save_trajectory and backend in ("numba", "cuda"):
        raise ValueError(f"--save-trajectory streams each kept step to disk from the torch "
                         f"loop; backend {backend!r} runs the whole loop in one fused kernel. "
                         f"Use --backend torch (or auto, which then picks torch)")
    dim = settings.get("dim")
    if dim is not None:
        dim = check_int("settings['dim'] (--dim)", dim, minimum=1)
    block = _component_config("sampler", sampler_spec)
    sampler = ebmcore.create("sampler", block["name"], **block["params"])
    event_shape = energy.event_shape
    if event_shape is None:
        if dim is None:
            raise ValueError(f"{type(energy).__name__} accepts any dimension; pass --dim")
        event_shape = (dim,)
    elif dim is not None and tuple(event_shape) != (dim,):
        raise ValueError(f"--dim {dim} does not fit {type(energy).__name__}, whose event shape "
                         f"is {tuple(event_shape)}")
    ranks = _ranks(distributed)
    ranks.main_first(lambda: prepare_output_dir(out, overwrite=overwrite))
    out = Path(out)
    ref = next(iter(energy.buffers()), None)
    ref = next(iter(energy.parameters()), ref)
    dtype = ref.dtype if ref is not None else torch.float32
    device = ref.device if ref is not None else torch.device("cpu")
    x0 = float(settings.get("init_scale", 1.0)) * torch.randn(
        (int(settings["n_chains"]), *event_shape), generator=torch.Generator().manual_seed(seed),
        dtype=dtype).to(device)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    writer = (_trajectory_writer(out / "trajectory.npy", n_steps // thin, x0, trace_chains,
                                 ranks) if save_trajectory else None)
    try:
        result = sampler.sample(energy, x0, n_steps, burn_in=int(settings.get("burn_in", 0)),
                                thin=thin, generator=generator, return_trajectory=True,
                                trace_chains=trace_chains, on_keep=writer, backend=backend,
                                progress=progress and ranks.is_main, distributed=distributed)
    except BaseException:
        if writer is not None:  # a half-written file would read as a whole one
            writer.close()
            writer.path.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    samples = result.samples.detach().cpu()
    diag = result.diagnostics
    trajectory = result.trajectory.detach().cpu()
    acceptance = diag.get("acceptance")
    report = {
        "sampler": block, "backend": diag.get("backend"), "seconds": diag.get("seconds"),
        "n_chains": int(samples.shape[0]), "event_shape": list(event_shape), "seed": seed,
        "acceptance_mean": None if acceptance is None else float(acceptance.mean()),
        "nonfinite_chains": int(diag["nonfinite_chains"].numel())
        if "nonfinite_chains" in diag else None,
        "chains": chain_diagnostics(trajectory, total_chains=int(samples.shape[0]),
                                    stride=int(diag.get("trajectory_stride", 1))),
        "trajectory": None if writer is None else str(writer.path),
        "versions": versions(), "world_size": ranks.world_size,
    }
    if not ranks.is_main:
        return report  # rank 0 writes the files
    torch.save(samples, out / "samples.pt")
    np.save(out / "samples.npy", samples.numpy())
    report["plots"] = _plot_chains(trajectory, samples, energy, out)
    _write_json(out / "diagnostics.json", report)
    return report


def _trajectory_writer(path: Path, n_kept: int, x0: torch.Tensor, trace_chains: int,
                       ranks: Any) -> Any:
    """The ``on_keep`` hook that streams every chain's kept steps into ``path``.

    In a distributed run rank 0 creates the file and each rank writes the columns of the
    chains it samples (:func:`ebmcore.distributed.chain_shards`).
    """
    from ebmcore.sampler import TrajectoryFile, trace_stride

    if not ranks.active:
        return TrajectoryFile(path, n_kept, x0.shape, x0.dtype)
    from ebmcore.distributed import chain_shards

    stride = trace_stride(x0.shape[0], trace_chains)
    columns = chain_shards(x0.shape[0], stride, ranks.world_size)[ranks.rank]
    created = ranks.main_first(
        lambda: TrajectoryFile(path, n_kept, x0.shape, x0.dtype, columns=columns))
    return created or TrajectoryFile(path, n_kept, x0.shape, x0.dtype, columns=columns,
                                     create=False)


def evaluate_checkpoint(path: str | Path, *, n_test: int = 20000,
                        n_ais_chains: int | None = None, n_ais_temps: int | None = None,
                        resolution: int = 256,
                        bounds: tuple[float, float] = (-5.0, 5.0), seed: int = 0
                        ) -> dict[str, Any]:
    """Evaluate a model saved by a training run: exact 2-D figures, AIS bounds, MMD and KSD.

    A model of an image data set gets :func:`ebmcore.evaluation.image_report.
    image_evaluation` instead (``image_evaluation`` in the report): AIS bounds of its
    held-out log-likelihood beside exact baselines, class coverage and MMD of its samples.

    The 2-D figures count the whole plane (see :func:`ebmcore.evaluate.grid_evaluation`): a
    model that is not a density gets "not normalisable" instead of a likelihood. The AIS
    base is a Gaussian centred on the box with the box's half-width as its standard
    deviation, wide enough to reach the mass the grid counts outside the box.

    Args:
        path: ``model.pt`` from a run folder, or the run folder itself.
        n_test: Held-out points drawn from the run's data set.
        n_ais_chains: Annealing chains for the AIS bounds of ``log Z`` (``None``: 500, or
            the image recipe's ``evaluate.ais_chains`` for an image model).
        n_ais_temps: Temperatures along the AIS path (``None``: 1,000, or the image recipe's
            ``evaluate.ais_temps``). 200 left the reverse estimate of the demo's model a nat
            below the grid's exact ``log Z``; 1,000 brackets it.
        resolution: Grid cells per axis for the exact 2-D evaluation.
        bounds: The box of the grid evaluation; its half-width is the AIS base's scale.
        seed: Seeds every draw.
    """
    from ebmcore.checkpoint import build_model, load_checkpoint_with_meta
    from ebmcore.evaluate import ais, grid_evaluation, ksd, mmd, reverse_ais

    target = Path(path)
    if target.is_dir():
        target = target / "model.pt"
    model = build_model(target)
    model.eval()
    _, meta = load_checkpoint_with_meta(target)
    dataset_spec = meta.get("dataset")
    if not isinstance(dataset_spec, dict):
        raise ValueError(f"{str(target)!r} records no data set; was it written by ebmcore train?")
    dataset = ebmcore.create("dataset", dataset_spec["name"], **dataset_spec.get("params", {}))
    if is_image_dataset(dataset):
        from ebmcore.evaluation.image_report import image_evaluation

        recipe = IMAGE_RECIPE["evaluate"]
        evaluation = image_evaluation(
            model, dataset, None, n_ais_chains=n_ais_chains or recipe["ais_chains"],
            n_ais_temps=n_ais_temps or recipe["ais_temps"], seed=seed)
        return {"checkpoint": str(target), "dataset": dataset_spec,
                "image_evaluation": evaluation.to_dict()}
    dtype = next(model.parameters()).dtype
    test_x = dataset.sample(n_test, generator=torch.Generator().manual_seed(seed)).to(dtype)
    report: dict[str, Any] = {"checkpoint": str(target), "dataset": dataset_spec}
    if tuple(dataset.event_shape) == (2,):
        grid = grid_evaluation(model, dataset if dataset.has_log_prob else None, test_x,
                               bounds=bounds, resolution=resolution)
        report["grid"] = grid.to_dict()
    dim = int(torch.tensor(dataset.event_shape).prod())
    # The base is as wide as the box (sd = its half-width), so its draws reach three times
    # the box: the bounds then see the mass the grid evaluation counts outside the box.
    scale2 = (0.5 * (bounds[1] - bounds[0])) ** 2
    base = ebmcore.create("energy", "gaussian", mean=[0.0] * dim, diag=[scale2] * dim)
    base = base.to(dtype) if hasattr(base, "to") else base
    generator = torch.Generator().manual_seed(seed + 1)
    n_chains, n_temps = n_ais_chains or AIS_CHAINS, n_ais_temps or AIS_TEMPS
    lower = ais(model, base, n_chains=n_chains, n_temps=n_temps, generator=generator)
    upper = reverse_ais(model, lower.samples, base, n_temps=n_temps, generator=generator)
    report["ais"] = {
        "log_z_lower": lower.log_z, "lower_stderr": lower.stderr, "lower_ess": lower.ess,
        "log_z_upper_approx": upper.log_z, "upper_stderr": upper.stderr,
        "upper_ess": upper.ess, "n_chains": n_chains, "n_temps": n_temps,
        "note": "the upper bound starts from AIS samples, not exact draws, so it is approximate",
    }
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
