"""A trainer's checkpoint: everything needed to continue a run bit for bit, and resuming it.

A checkpoint holds the model, optimiser, EMA, the loss's state (its persistent chains
gathered over the ranks), every random-number state (the trainer's data and loss generators,
torch's global ones, and in a distributed run each rank's), the data position, the history,
the skipped steps and the training time. :func:`trainer_state` and :func:`load_trainer_state`
are what :meth:`Trainer.state_dict <ebmcore.training.Trainer.state_dict>` and
:meth:`~ebmcore.training.Trainer.load_state_dict` do; :func:`read_resumable` finds the newest
readable checkpoint of a folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ebmcore.checkpoint import load_checkpoint
from ebmcore.errors import CheckpointError
from ebmcore.ranks import mix_seed, rank_seed
from ebmcore.training.health import FiniteWatch
from ebmcore.training.loss_state import gather_loss_state, split_loss_state

if TYPE_CHECKING:
    from ebmcore.training.loop import Trainer

#: The file names of the checkpoints a trainer writes into its ``checkpoint_dir``.
CHECKPOINT_GLOB = "step-*.pt"

#: The entries every trainer checkpoint has.
REQUIRED_KEYS = frozenset({"step", "model", "optimizer", "ema", "loss", "rng", "data",
                           "history", "config", "seconds"})


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint written after ``step``."""
    return f"step-{step:09d}.pt"


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Return everything needed to continue ``trainer``'s run exactly.

    In a distributed run this is collective, and holds every rank's persistent chains
    (gathered in rank order) and random streams (``ranks``); the rest is rank 0's.
    """
    ranks = trainer._ranks
    streams = ranks.gather_objects({"loss": trainer.loss_generator.get_state(),
                                    "torch": torch.get_rng_state()})
    rng: dict[str, Any] = {"data": trainer.data_generator.get_state(),
                           "loss": streams[0]["loss"], "torch": streams[0]["torch"]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = list(torch.cuda.get_rng_state_all())
    ema = trainer._ema
    state = {
        "step": trainer.step,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "ema": None if ema is None else ema.model.state_dict(),
        "loss": gather_loss_state(trainer.loss, ranks),
        "rng": rng,
        "data": trainer._batches.state_dict(),
        "history": trainer.history,
        "skipped_steps": list(trainer.skipped_steps),
        "seconds": trainer._seconds,
        "config": {"batch_size": trainer.batch_size, "seed": trainer.seed,
                   "loss": type(trainer.loss).__name__, "model": type(trainer.model).__name__},
    }
    if ranks.active:
        state["ranks"] = {"world_size": trainer.world_size,
                          "loss": [s["loss"] for s in streams],
                          "torch": [s["torch"] for s in streams]}
    return state


def _check_same_setup(trainer: Trainer, config: dict[str, Any]) -> None:
    for key, mine in (("loss", type(trainer.loss).__name__),
                      ("model", type(trainer.model).__name__)):
        if config[key] != mine:
            raise ValueError(f"the checkpoint was written with {key} {config[key]}, but "
                             f"this trainer has {mine}")
    if config["batch_size"] != trainer.batch_size:
        raise ValueError(f"the checkpoint used batch_size={config['batch_size']}, this "
                         f"trainer has batch_size={trainer.batch_size}")


def load_trainer_state(trainer: Trainer, state: dict[str, Any]) -> None:
    """Restore what :func:`trainer_state` returned into ``trainer`` (built identically).

    The state may come from a run on another number of ranks: the persistent chains are
    split over this run's ranks, rank ``r`` takes rank ``r``'s random streams where the
    writer had such a rank, and a fresh stream derived from the seed and the step
    otherwise. With as many ranks as the writer, the run continues exactly.
    """
    _check_same_setup(trainer, state["config"])
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    ema = trainer._ema
    if (state["ema"] is None) != (ema is None):
        raise ValueError("the checkpoint and this trainer disagree on using an EMA")
    if ema is not None:
        ema.model.load_state_dict(state["ema"])
    trainer.loss.load_state_dict(split_loss_state(trainer.loss, state["loss"], trainer._ranks))
    trainer.loss.to(trainer.device)
    rng = state["rng"]
    ranks = state.get("ranks") or {"loss": [rng["loss"]], "torch": [rng["torch"]]}
    rank = trainer.rank
    trainer.data_generator.set_state(rng["data"])
    if rank < len(ranks["loss"]):
        trainer.loss_generator.set_state(ranks["loss"][rank])
    else:  # a rank the writer did not have
        trainer.loss_generator.manual_seed(
            rank_seed(mix_seed(trainer.seed + 1, int(state["step"])), rank))
    trainer._batches.load_state_dict(state["data"])
    # after the loader replay, which uses it; rank 0's for a rank the writer did not have
    torch.set_rng_state(ranks["torch"][rank] if rank < len(ranks["torch"]) else rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    trainer.step = int(state["step"])
    trainer.history = list(state["history"])
    trainer.skipped_steps = [int(v) for v in state.get("skipped_steps", [])]
    trainer._seconds = float(state["seconds"])
    trainer._in_step = False
    trainer._watch = FiniteWatch()  # what went wrong after the checkpoint is undone


def check_trainer_state(state: dict[str, Any], path: Path) -> None:
    """Raise unless ``state`` (read from ``path``) has every entry of a trainer checkpoint.

    Raises:
        CheckpointError: Naming the missing entries.
    """
    missing = REQUIRED_KEYS - set(state)
    if missing:
        raise CheckpointError(f"{str(path)!r} is not a Trainer checkpoint (missing "
                              f"{', '.join(sorted(missing))})")


def read_resumable(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read the checkpoint to resume from ``path`` and return it with the file used.

    Args:
        path: A checkpoint file, or a directory whose newest readable ``step-*.pt`` is used
            (unreadable newer files are skipped with a warning).

    Raises:
        CheckpointError: When the file (or every file in the directory) is unreadable, or
            is not a trainer checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        state = load_checkpoint(path)
        check_trainer_state(state, path)
        return state, path
    candidates = sorted(path.glob(CHECKPOINT_GLOB), reverse=True)
    if not candidates:
        raise CheckpointError(f"no checkpoints ({CHECKPOINT_GLOB}) in {str(path)!r}")
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate)
        except CheckpointError as exc:
            # stacklevel: this function, Trainer.resume, then the caller to blame
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=3)
            continue
        check_trainer_state(state, candidate)
        return state, candidate
    raise CheckpointError(f"every checkpoint in {str(path)!r} is unreadable")
