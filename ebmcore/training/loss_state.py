"""A loss's persistent chains in a distributed run: each rank's share, and checkpoints.

A loss declares which of its state is per-chain (:attr:`ebmcore.Loss.chain_counts`,
:attr:`ebmcore.Loss.sharded_state`). Before training each rank keeps its share of every
chain count (:func:`share_chain_counts`); a checkpoint holds every rank's chains gathered in
rank order (:func:`gather_loss_state`); and a run that resumes it, on any number of ranks,
splits them again (:func:`split_loss_state`) with the same rule that shared the counts.
"""

from __future__ import annotations

from typing import Any

import torch

from ebmcore.loss import Loss
from ebmcore.ranks import RankGroup, shard_range


def share_chain_counts(loss: Loss, ranks: RankGroup) -> dict[str, int]:
    """Give this rank its share of each of ``loss.chain_counts``.

    Returns the counts over all ranks that were shared, by attribute name. A count that is
    ``None`` ("as many as the batch", which is already this rank's share) is left alone.

    Raises:
        TypeError: When a declared count is neither an integer nor ``None``.
        ValueError: When a count is smaller than the number of ranks.
    """
    totals: dict[str, int] = {}
    if not ranks.active:
        return totals
    for name in loss.chain_counts:
        value = getattr(loss, name)  # declared by the loss, so it must exist
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{type(loss).__name__}.chain_counts names {name!r}, which must be "
                            f"an int or None, got {type(value).__name__}")
        if value < ranks.world_size:  # judged alike on every rank, so all of them raise
            raise ValueError(f"loss {name}={value} counts chains over all ranks, and is smaller "
                             f"than the {ranks.world_size} ranks: each needs at least one")
        start, stop = shard_range(value, ranks.rank, ranks.world_size)
        setattr(loss, name, stop - start)
        totals[name] = value
    return totals


def _sharded_keys(loss: Loss, state: dict[str, Any]) -> list[str]:
    names = loss.sharded_state
    return [key for key, value in state.items()
            if key.rsplit(".", 1)[-1] in names and isinstance(value, torch.Tensor)]


def gather_loss_state(loss: Loss, ranks: RankGroup) -> dict[str, Any]:
    """Return ``loss.state_dict()`` with every rank's persistent chains gathered (collective).

    The entries named by ``loss.sharded_state`` hold every rank's rows in rank order; the
    others are this rank's.
    """
    state = loss.state_dict()
    if not ranks.active:
        return state
    state = state.copy()
    for key in _sharded_keys(loss, state):
        state[key] = ranks.gather_rows(state[key])
    return state


def split_loss_state(loss: Loss, state: dict[str, Any], ranks: RankGroup) -> dict[str, Any]:
    """Return ``state`` (as :func:`gather_loss_state` wrote it) with this rank's chains only.

    The chains are split over the ranks with :func:`~ebmcore.ranks.shard_range`, whatever
    the number of ranks that wrote them: the same split that :func:`share_chain_counts` gives
    the counts.
    """
    if not ranks.active:
        return state
    state = state.copy()
    for key in _sharded_keys(loss, state):
        rows = state[key]
        if rows.ndim == 0 or rows.shape[0] == 0:
            continue  # not filled yet: the loss fills it on first use
        start, stop = shard_range(rows.shape[0], ranks.rank, ranks.world_size)
        state[key] = rows[start:stop].clone()
    return state
