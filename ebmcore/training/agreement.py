"""Where the ranks of a distributed training run must agree, and how they do.

Every rank trains its own copy of the model; these functions keep the copies one run: the
same starting weights (rank 0's), a stop at the same step, and one verdict on the first
non-finite step of any rank. In a single process each is the identity or a plain read.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ebmcore.ranks import RankGroup
from ebmcore.training.health import Found


def start_alike(ranks: RankGroup, model: nn.Module, loss: nn.Module) -> None:
    """Overwrite every rank's model and loss parameters (and the model's buffers) with rank
    0's, as ``DistributedDataParallel`` does at start."""
    ranks.broadcast_([*model.parameters(), *model.buffers(), *loss.parameters()])


def earliest(found: Sequence[Found | None]) -> Found | None:
    """The first bad step among the ranks' finiteness records (``None`` when none is bad)."""
    bad = [f for f in found if f is not None]
    return min(bad, key=lambda f: f[0]) if bad else None


def first_bad_on_any_rank(ranks: RankGroup, found: Found | None) -> Found | None:
    """The earliest bad step of any rank, given this rank's (collective when distributed)."""
    if not ranks.active:
        return found
    return earliest(ranks.gather_objects(found))


def stop_now(ranks: RankGroup, requested: bool, step: int, log_every: int, steps: int) -> bool:
    """Whether to stop after ``step``: on request, or where all ranks agree on one.

    Ranks must stop at the same step, so in a distributed run a request counts at the next
    logged step (every ``log_every`` steps and the last), where the ranks compare notes.
    """
    if not ranks.active:
        return requested
    due = step % log_every == 0 or step == steps
    return due and ranks.any_true(requested)
