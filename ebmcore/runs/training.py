"""Training a run: build it from its configuration, train it, and write its folder.

:func:`train_run` starts a run; :func:`ebmcore.runs.resuming.resume_run` continues one. Both
end in :func:`finish_run`, which trains to the configured steps (or a signal), saves the
model with the run's provenance and hands it to :mod:`ebmcore.runs.trained_model` for
sampling and evaluation.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ebmcore.config import dump_toml
from ebmcore.runs.build import build_training, is_image_dataset, uses_sampler
from ebmcore.runs.folder import (
    Log,
    prepare_output_dir,
    quiet,
    run_ranks,
    save_figure,
    versions,
    write_json,
)


def train_run(config: dict[str, Any], out: str | Path, *, progress: bool = False,
              log: Log = quiet, overwrite: bool = False,
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
    ranks = run_ranks(distributed)
    ranks.main_first(lambda: prepare_output_dir(out, overwrite=overwrite))
    out = Path(out)
    trainer, built, seed = build_trainer(config, out, progress, distributed)
    resolved = built["config"]
    if not ranks.is_main:
        log = quiet
    else:
        (out / "config.toml").write_text(dump_toml(resolved), encoding="utf-8")
    # a loss that draws no negatives uses no sampler in training (the run's sampler then
    # only samples the trained model)
    using = f" + {resolved['sampler']['name']}" if uses_sampler(resolved) else ""
    log(f"training {resolved['model']['name']} on {resolved['dataset']['name']} with "
        f"{resolved['loss']['name']}{using} for {trainer.steps} steps")
    return finish_run(trainer, built, seed, out, progress, log, resumed_from=None)


def build_trainer(config: dict[str, Any], out: Path, progress: bool,
                  distributed: bool = False) -> tuple[Any, dict, int]:
    """Seed, build the components and the trainer of a run writing checkpoints into ``out``.

    Returns:
        The :class:`~ebmcore.training.Trainer`, what :func:`~ebmcore.runs.build.
        build_training` built, and the seed.
    """
    from ebmcore.runs.images import ReplayPictures
    from ebmcore.training import Trainer

    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    built = build_training(config)
    train_cfg = dict(built["config"].get("train", {}))
    picture_every = train_cfg.pop("picture_every", None)
    main = run_ranks(distributed).is_main
    callbacks = []
    if picture_every is not None and is_image_dataset(built["dataset"]) and main:
        callbacks.append(ReplayPictures(out / "pictures", int(picture_every)))
    trainer = Trainer(built["model"], built["loss"], data=built["dataset"],
                      steps=int(train_cfg.pop("steps")),
                      batch_size=int(train_cfg.pop("batch_size")),
                      checkpoint_dir=out / "checkpoints", progress=progress and main, seed=seed,
                      callbacks=callbacks, distributed=distributed, **train_cfg)
    return trainer, built, seed


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


def _train(trainer: Any, log: Log) -> str | None:
    """Train to the end or to a signal; return the signal's name, or ``None``."""
    stopped: dict[str, str] = {}
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
    return stopped.get("signal")


def finish_run(trainer: Any, built: dict[str, Any], seed: int, out: Path, progress: bool,
               log: Log, resumed_from: dict[str, Any] | None) -> dict[str, Any]:
    """Train to the end (or a signal), then write model.pt, metrics.json and the plots.

    Args:
        trainer: From :func:`build_trainer` (resumed or not).
        built: The components :func:`build_trainer` built, with the resolved ``config``.
        seed: The run's seed.
        out: The run folder.
        progress: Show progress bars on a terminal.
        log: Receives one line per stage.
        resumed_from: ``{"checkpoint", "step"}`` for a resumed run, else ``None``.

    Returns:
        The metrics written to ``metrics.json`` (the other ranks of a distributed run:
        the training metrics only).
    """
    from ebmcore.checkpoint import save_model
    from ebmcore.provenance import run_provenance
    from ebmcore.runs.fields import evaluate_and_sample_field, is_flow_model
    from ebmcore.runs.trained_model import evaluate_and_sample

    resolved = built["config"]
    start_step = trainer.step
    started = time.perf_counter()
    stopped_by = _train(trainer, log)
    train_seconds = time.perf_counter() - started
    # a signal during the last step still means "stop": skip the (long) evaluation
    interrupted = stopped_by is not None or trainer.step < trainer.steps
    if interrupted:
        log(f"stopped by {stopped_by or 'request'} at step {trainer.step}; last "
            f"checkpoint: {trainer.last_checkpoint}")

    metrics: dict[str, Any] = {
        "seed": seed, "interrupted": interrupted, "stopped_by": stopped_by,
        "steps_done": trainer.step, "resumed_from": resumed_from,
        "last_checkpoint": None if trainer.last_checkpoint is None
        else str(trainer.last_checkpoint),
        "runaway": trainer.runaway,  # the first logged step whose energies ran away, or None
        "skipped_steps": trainer.skipped_steps,  # non-finite steps skipped (skip_nonfinite)
        "history": trainer.history, "versions": versions(),
        "timings": {"train_seconds": train_seconds,
                    "seconds_per_step": train_seconds / max(trainer.step - start_step, 1)},
        "world_size": trainer.world_size,
        # which distribution supplied each component, for the error when one goes missing
        "provenance": run_provenance(resolved),
    }
    if trainer.rank != 0:
        return metrics  # the other ranks' work ends with training: rank 0 writes the folder
    model = trainer.ema_model or built["model"]
    model.eval()
    spec = {"kind": "model", "name": resolved["model"]["name"],
            "params": resolved["model"]["params"]}
    save_model(out / "model.pt", model, spec=spec,
               meta={"dataset": resolved["dataset"], "config_toml": dump_toml(resolved),
                     "provenance": metrics["provenance"]})
    if not interrupted and is_flow_model(model):
        log("sampling the trained field as a flow and scoring it")
        metrics.update(evaluate_and_sample_field(model, built["dataset"], built["loss"],
                                                 resolved, seed, out))
    elif not interrupted:
        log("evaluating and sampling the trained model")
        metrics.update(evaluate_and_sample(model, built["dataset"], built["sampler"],
                                           resolved, seed, out, progress))
    # wall-clock seconds are in metrics.json; the figure shows what the model learned
    history = {k: [row[k] for row in trainer.history if k in row]
               for k in (trainer.history[0] if trainer.history else {}) if k != "seconds"}
    if history:
        from ebmcore import plot

        save_figure(plot.training_curves(history), out / "training.png")
    write_json(out / "metrics.json", metrics)
    return metrics
