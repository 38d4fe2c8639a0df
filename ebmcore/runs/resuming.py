"""Resuming a run: continue a run folder from its newest readable checkpoint.

The run is rebuilt from the folder's ``config.toml`` exactly as a replayed one, after
checking that every component the run recorded (:func:`ebmcore.provenance.run_provenance`
in its ``metrics.json``) is still installed; then :func:`ebmcore.runs.training.finish_run`
trains it to the end as :func:`~ebmcore.runs.training.train_run` would have.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ebmcore.runs.folder import Log, quiet, run_ranks, to_stderr
from ebmcore.runs.training import build_trainer, finish_run


def resume_run(folder: str | Path, *, progress: bool = False, log: Log = quiet,
               warn: Log = to_stderr, distributed: bool = False) -> dict[str, Any] | None:
    """Continue a run folder written by :func:`~ebmcore.runs.training.train_run` from its
    newest readable checkpoint.

    The run is rebuilt from the folder's ``config.toml``; the trainer resumes from the newest
    ``checkpoints/step-*.pt`` that loads (unreadable newer ones, such as a file cut short, are
    skipped, each reported through ``warn``) and trains to the configured steps. Then the
    outputs a training run writes (``model.pt``, ``metrics.json``, samples and plots) are
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
    from ebmcore.provenance import require_recorded

    out = Path(folder)
    if not run_ranks(distributed).is_main:
        log = warn = quiet
    candidates = resumable_checkpoints(out)
    saved = load_toml(out / "config.toml")
    # a component whose plugin is gone: name the distribution that supplied it
    require_recorded(_recorded_provenance(out / "metrics.json"), saved)
    # the same merge as a replayed config.toml, so a resumed run is built exactly as one
    config = complete_run(saved)
    trainer, built, seed = build_trainer(config, out, progress, distributed)
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
                              f"start the run again from {str(out / 'config.toml')!r}")
    if trainer.step >= trainer.steps and _completed(out / "metrics.json", trainer.steps):
        return None
    log(f"resuming {str(out)!r} from {used.name} (step {trainer.step} of {trainer.steps})")
    return finish_run(trainer, built, seed, out, progress, log,
                      resumed_from={"checkpoint": str(used), "step": trainer.step})


def resumable_checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoints a run folder offers to :func:`resume_run`, newest first.

    Raises:
        FileNotFoundError: When ``folder`` or its ``config.toml`` does not exist.
        CheckpointError: When the folder holds no checkpoint.
    """
    from ebmcore.errors import CheckpointError
    from ebmcore.training import CHECKPOINT_GLOB

    out = Path(folder)
    if not out.is_dir():
        raise FileNotFoundError(f"run folder {str(out)!r} to resume does not exist")
    config_file = out / "config.toml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(out)!r} holds no config.toml; resuming takes a run "
                                f"folder written by a training run")
    candidates = sorted((out / "checkpoints").glob(CHECKPOINT_GLOB), reverse=True)
    if not candidates:
        raise CheckpointError(f"{str(out)!r} holds no checkpoints (checkpoints/"
                              f"{CHECKPOINT_GLOB}) to resume from; start the run again from "
                              f"{str(config_file)!r}")
    return candidates  # names are zero-padded: newest first


def _recorded_provenance(metrics_file: Path) -> dict[str, Any] | None:
    """Where the components of a run came from, as its ``metrics.json`` recorded it
    (:func:`ebmcore.provenance.run_provenance`), or ``None`` without one."""
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # stopped before its first metrics.json: nothing recorded to check
    recorded = metrics.get("provenance") if isinstance(metrics, dict) else None
    return recorded if isinstance(recorded, dict) else None


def _completed(metrics_file: Path, steps: int) -> bool:
    """Whether ``metrics.json`` records a run that trained all ``steps`` uninterrupted."""
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # killed after its last checkpoint, before its outputs: finish them
    return (isinstance(metrics, dict) and metrics.get("interrupted") is False
            and metrics.get("steps_done") == steps)
