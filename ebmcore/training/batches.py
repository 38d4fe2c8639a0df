"""Where a trainer's batches come from: a data tensor, a data set or a DataLoader.

Each source is an adapter with ``next() -> Tensor`` and a ``state_dict`` that lets a resumed
run draw exactly the batches the interrupted run would have drawn next. :func:`build_batches`
picks the adapter for what the user passed, and :func:`confinement_sample` draws the data a
model's confining wall is fitted to without disturbing the batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from ebmcore.dataset import Dataset
from ebmcore.ranks import RankGroup, batch_share
from ebmcore.validation import check_points

#: Data points drawn to fit a model's confining wall (see :func:`confinement_sample`).
CONFINEMENT_SAMPLE = 10_000


class TensorBatches:
    """Shuffled minibatches of a data tensor, one permutation per epoch (last partial dropped).

    Args:
        data: The data tensor ``(N, *event_shape)``.
        batch_size: Points per (global) batch.
        generator: The data stream's generator (alike on every rank).
        rows: This rank's part of each global batch in a distributed run.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator,
                 rows: slice = slice(None)) -> None:
        if data.shape[0] < batch_size:
            raise ValueError(f"batch_size={batch_size} exceeds the {data.shape[0]} points in "
                             f"the data tensor")
        self.data = data
        self.batch_size = batch_size
        self.generator = generator
        self.rows = rows
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> torch.Tensor:
        """Return the next batch (this rank's rows of it)."""
        n = self.data.shape[0]
        if self.perm is None or self.pos + self.batch_size > n:
            self.perm = torch.randperm(n, generator=self.generator)
            self.pos = 0
        rows = self.perm[self.pos:self.pos + self.batch_size][self.rows]
        self.pos += self.batch_size
        return self.data[rows.to(self.data.device)]

    def state_dict(self) -> dict[str, Any]:
        """The epoch's permutation and the position in it."""
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from what :meth:`state_dict` returned."""
        self.perm, self.pos = state["perm"], int(state["pos"])


class DatasetBatches:
    """Fresh draws from a data set every step (this rank's ``rows`` of each global batch).

    Args:
        dataset: The data set drawn from.
        batch_size: Points per (global) batch.
        generator: The data stream's generator (alike on every rank).
        rows: This rank's part of each global batch in a distributed run.
    """

    def __init__(self, dataset: Dataset, batch_size: int, generator: torch.Generator,
                 rows: slice = slice(None)) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = generator
        self.rows = rows

    def next(self) -> torch.Tensor:
        """Draw the next batch (this rank's rows of it)."""
        batch = self.dataset.sample(self.batch_size, generator=self.generator)
        return batch if self.rows == slice(None) else batch[self.rows]

    def state_dict(self) -> dict[str, Any]:
        """Nothing: the position lives in the data generator, which the trainer saves."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""


def loader_inputs(batch: Any) -> torch.Tensor:
    """Return the inputs of a loader's batch: the tensor, or the first of a tuple."""
    if isinstance(batch, (list, tuple)):
        batch = batch[0]  # (inputs, labels) loaders: the energy sees the inputs
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"the DataLoader must yield tensors or (tensor, ...) tuples, got "
                        f"{type(batch).__name__}")
    return batch


class LoaderBatches:
    """Batches of a ``DataLoader``, restartable mid-epoch by replaying the epoch's shuffle.

    The RNG states that seed an epoch's shuffle (torch's global generator and the loader's
    own, if it has one) are recorded when the epoch starts; resuming restores them, rebuilds
    the iterator and skips the batches already used. This is exact for loaders whose order
    depends only on those generators (the standard samplers).

    Args:
        loader: The DataLoader.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None
        self.epoch_rng: dict[str, Any] | None = None
        self.pos = 0

    def _start_epoch(self) -> None:
        gen = self.loader.generator
        self.epoch_rng = {"torch": torch.get_rng_state(),
                          "loader": None if gen is None else gen.get_state()}
        self.iterator = iter(self.loader)
        self.pos = 0

    def next(self) -> torch.Tensor:
        """Return the loader's next batch's inputs, starting a new epoch when one ends."""
        if self.iterator is None:
            self._start_epoch()
        try:
            batch = next(self.iterator)
        except StopIteration:
            self._start_epoch()
            try:
                batch = next(self.iterator)
            except StopIteration:
                raise ValueError("the DataLoader yielded no batches") from None
        self.pos += 1
        return loader_inputs(batch)

    def state_dict(self) -> dict[str, Any]:
        """The RNG states that seeded this epoch and the batches used of it."""
        return {"epoch_rng": self.epoch_rng, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay the epoch's shuffle and skip the batches already used."""
        epoch_rng, pos = state["epoch_rng"], int(state["pos"])
        self.iterator, self.epoch_rng, self.pos = None, epoch_rng, 0
        if epoch_rng is None:
            return
        current = torch.get_rng_state()
        torch.set_rng_state(epoch_rng["torch"])
        gen = self.loader.generator
        if gen is not None and epoch_rng["loader"] is not None:
            gen.set_state(epoch_rng["loader"])
        self.iterator = iter(self.loader)
        for _ in range(pos):
            next(self.iterator)
        self.pos = pos
        torch.set_rng_state(current)


#: What a trainer draws its batches from.
Batches = TensorBatches | DatasetBatches | LoaderBatches


def warn_unsharded_loader(loader: DataLoader) -> None:
    """Warn when a DataLoader in a distributed run has no ``DistributedSampler``."""
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(loader.sampler, DistributedSampler):
        warnings.warn("in a distributed run every rank iterates its own DataLoader: give it a "
                      "torch.utils.data.DistributedSampler, or every rank sees the same data",
                      stacklevel=3)


def build_batches(data: Any, *, event_shape: tuple[int, ...], batch_size: int,
                  generator: torch.Generator, ranks: RankGroup) -> Batches:
    """Return the batch adapter for ``data``.

    Args:
        data: A data tensor ``(N, *event_shape)``, an :class:`ebmcore.Dataset` (or a
            registered data set's name), or a ``torch.utils.data.DataLoader``.
        event_shape: The model's event shape, which a data tensor must match.
        batch_size: Points per global batch (tensor and data set sources).
        generator: The data stream's generator.
        ranks: The job's ranks; each takes its rows of every global batch.

    Raises:
        TypeError: When ``data`` is none of these.
        ValueError: When ``data`` is missing, or a batch does not split over the ranks.
    """
    if data is None:
        raise ValueError("data is required: a tensor, a data set (name or instance) or a "
                         "DataLoader")
    if isinstance(data, str):
        import ebmcore

        data = ebmcore.create("dataset", data)
    if isinstance(data, DataLoader):
        if ranks.active:
            warn_unsharded_loader(data)
        return LoaderBatches(data)
    share = batch_share(batch_size, ranks.world_size)
    rows = slice(ranks.rank * share, (ranks.rank + 1) * share)
    if isinstance(data, torch.Tensor):
        check_points("data", data, event_shape)
        return TensorBatches(data, batch_size, generator, rows)
    if isinstance(data, Dataset):
        return DatasetBatches(data, batch_size, generator, rows)
    raise TypeError(f"data must be a tensor, an ebmcore.Dataset (instance or registered name) "
                    f"or a DataLoader; got {type(data).__name__}")


def confinement_sample(batches: Batches, seed: int) -> torch.Tensor:
    """The data a model's confining wall is fitted to, drawn without moving the batches.

    The whole data tensor; :data:`CONFINEMENT_SAMPLE` draws of a data set on a generator of
    their own (seeded from ``seed``, so the training batches do not change); or the first
    batches of a loader up to that many points, with torch's global RNG state and the
    loader's own generator restored.

    Args:
        batches: The trainer's batch adapter.
        seed: The trainer's seed.
    """
    if isinstance(batches, TensorBatches):
        return batches.data
    if isinstance(batches, DatasetBatches):
        generator = torch.Generator().manual_seed(seed + 2)
        return batches.dataset.sample(CONFINEMENT_SAMPLE, generator=generator)
    parts, n = [], 0
    own = batches.loader.generator  # a loader's own shuffle stream
    own_state = None if own is None else own.get_state()
    with torch.random.fork_rng(devices=[]):
        for batch in batches.loader:
            parts.append(loader_inputs(batch))
            n += parts[-1].shape[0]
            if n >= CONFINEMENT_SAMPLE:
                break
    if own is not None:
        own.set_state(own_state)
    if not parts:
        raise ValueError("the DataLoader yielded no batches")
    return torch.cat(parts)
