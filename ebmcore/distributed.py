"""Deprecated home of ebmcore's distributed pieces; they moved to one module per job.

- :mod:`ebmcore.ranks`: :class:`~ebmcore.ranks.RankGroup` (the collectives), seeds and
  shards (``mix_seed``, ``rank_seed``, ``rank_generator``, ``shard_range``, ``batch_share``).
- :mod:`ebmcore.sharded_sampling`: sampling with the chains split over the ranks
  (``sample_sharded``, ``chain_shards``, ``merge_diagnostics``).
- :mod:`ebmcore.training.loss_state`: a loss's persistent chains over the ranks
  (``share_chain_counts``, ``gather_loss_state``, ``split_loss_state``).
- :mod:`ebmcore.training.agreement` and :mod:`ebmcore.training.batches`: ``earliest`` and
  ``warn_unsharded_loader``.
- :mod:`ebmcore.errors`: :class:`~ebmcore.errors.DistributedError`.

Every old name still imports from here for one release, with a ``DeprecationWarning`` that
names its new home. What each rank holds in training and sampling is described in
docs/distributed.md.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: Where each name this module used to define lives now.
MOVED: dict[str, str] = {
    **{name: "ebmcore.ranks" for name in (
        "RankGroup", "batch_share", "mix_seed", "rank_generator", "rank_seed", "shard_range")},
    **{name: "ebmcore.sharded_sampling" for name in (
        "chain_shards", "merge_diagnostics", "sample_sharded")},
    **{name: "ebmcore.training.loss_state" for name in (
        "gather_loss_state", "share_chain_counts", "split_loss_state")},
    "earliest": "ebmcore.training.agreement",
    "warn_unsharded_loader": "ebmcore.training.batches",
    "DistributedError": "ebmcore.errors",
}

#: The per-chain state entries the built-in ``pcd`` declares (``Loss.sharded_state``);
#: before the declared protocol they were every loss's default.
SHARDED_STATE: tuple[str, ...] = ("buffer",)

#: The chain counts the built-in ``pcd`` declares (``Loss.chain_counts``); before the
#: declared protocol they were every loss's default.
CHAIN_COUNTS: tuple[str, ...] = ("buffer_size", "n_negatives")

__all__ = ["CHAIN_COUNTS", "SHARDED_STATE", *MOVED]


def __getattr__(name: str) -> Any:
    """Return a moved name from its new module, warning that its home changed."""
    module = MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"ebmcore.distributed.{name} moved to {module}.{name}; import it from "
                  f"there (ebmcore.distributed goes in the next release)",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
