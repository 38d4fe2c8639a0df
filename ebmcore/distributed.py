"""Distributed training and sampling on torch.distributed: ranks, shards and collectives.

Everything here runs inside a process group the caller (or :func:`ebmcore.launch.joined`)
initialised; ebmcore starts no processes of its own. :class:`RankGroup` is the handful of
collectives the trainer and the sampler use, and the identity for a single process, so one
code path serves both.

What each rank holds:

- **Training** (:class:`ebmcore.train.Trainer` with ``distributed=True``): the same model,
  optimiser and EMA on every rank (rank 0's initial weights are broadcast), the same global
  data stream, of which rank ``r`` takes rows ``[r b, (r + 1) b)`` of each global batch
  (``b = batch_size / world_size``); its own random stream for the loss (negatives,
  projections, noise) seeded by :func:`rank_seed`; and its own share of the loss's
  persistent chains (``pcd``'s replay buffer), split by :func:`shard_range`. Gradients are
  averaged over ranks after each backward pass, so every rank takes the same step.
- **Sampling** (:meth:`ebmcore.Sampler.sample` with ``distributed=True``): a contiguous block
  of the chains and its own random stream; samples, the traced chains and the diagnostics
  are gathered on every rank (:func:`sample_sharded`).

A loss declares which of its state holds per-rank chains with two optional attributes:
``sharded_state`` (state-dict entries whose rows are chains: gathered into one tensor in
a checkpoint and re-split over the ranks that resume it; default :data:`SHARDED_STATE`) and
``chain_counts`` (integer attributes that count chains over all ranks, each rank keeping
its share; default :data:`CHAIN_COUNTS`).
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ebmcore.launch import DistributedError
from ebmcore.validation import check_int

if TYPE_CHECKING:
    from ebmcore.sampler import SampleResult

T = TypeVar("T")

#: Loss state-dict entries (matched by their last name) whose rows are persistent chains.
SHARDED_STATE: tuple[str, ...] = ("buffer",)

#: Loss attributes that count chains over all ranks; each rank keeps its share.
CHAIN_COUNTS: tuple[str, ...] = ("buffer_size", "n_negatives")


def mix_seed(*values: int) -> int:
    """Return a 63-bit seed that depends on every value (a hash: nearby inputs are unrelated)."""
    data = b"".join(int(v).to_bytes(16, "little", signed=True) for v in values)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random stream in a job seeded with ``seed``.

    Rank 0 keeps ``seed`` itself, so a job of one process draws exactly what a plain run
    draws; every other rank gets :func:`mix_seed` of ``(seed, rank)``, a stream unrelated to
    the others'.
    """
    return int(seed) if rank == 0 else mix_seed(seed, rank)


def shard_range(n: int, rank: int, world_size: int, block: int = 1) -> tuple[int, int]:
    """Return the rows ``[start, stop)`` of ``n`` rows that rank ``rank`` holds.

    The rows are cut into blocks of ``block`` (the last may be short), and the blocks are
    dealt out as evenly as possible, the first ranks taking one more; a rank may get none
    when there are fewer blocks than ranks.

    Args:
        n: Number of rows.
        rank: The rank, from 0.
        world_size: Number of ranks.
        block: Rows that stay together (a trajectory's chain stride, say).
    """
    check_int("n", n, minimum=0)
    check_int("world_size", world_size, minimum=1)
    check_int("block", block, minimum=1)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    blocks = -(-n // block)
    base, extra = divmod(blocks, world_size)
    first = rank * base + min(rank, extra)
    count = base + (rank < extra)
    return min(first * block, n), min((first + count) * block, n)


def batch_share(batch_size: int, world_size: int) -> int:
    """Each rank's share of a global batch of ``batch_size`` points over ``world_size`` ranks.

    Raises:
        ValueError: When the batch does not split evenly (the gradients, averaged over the
            ranks with equal weights, would then not be the global batch's).
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size={batch_size} is the global batch and must split evenly "
                         f"over the {world_size} ranks (each rank's gradient is an average, "
                         f"weighted alike)")
    return batch_size // world_size


def rank_generator(generator: torch.Generator | None, rank: int) -> torch.Generator | None:
    """Rank ``rank``'s random stream, derived from the caller's ``generator``.

    Rank 0 uses ``generator`` itself; rank ``r > 0`` draws one number from it (every rank
    holds the same generator, so they draw the same number) and seeds a generator of its own
    on the same device with :func:`rank_seed` of that number. ``None`` stays ``None``: every
    rank then seeds itself from the operating system.
    """
    if generator is None or rank == 0:
        return generator
    base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=generator.device).manual_seed(rank_seed(base, rank))


class RankGroup:
    """This process's rank in a job and the collectives ebmcore uses.

    ``RankGroup()`` is a job of one process, for which every collective is the identity (no
    torch.distributed call at all); :meth:`current` describes the initialised default
    process group. A collective that fails (a rank died, or did not answer within the
    group's timeout) raises :class:`~ebmcore.launch.DistributedError` naming what was being
    done, instead of the backend's bare error.

    Args:
        rank: This process's rank.
        world_size: Number of processes.
        device: Where the collectives' tensors live: the current CUDA device for NCCL, the
            CPU for gloo.
    """

    def __init__(self, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu") -> None:
        self.rank = check_int("rank", rank, minimum=0)
        self.world_size = check_int("world_size", world_size, minimum=1)
        if rank >= world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size}")
        self.device = torch.device(device)

    @classmethod
    def current(cls, user: str) -> RankGroup:
        """Describe the default process group, which must be initialised.

        Args:
            user: Who needs it, for the error message (``"Trainer(distributed=True)"``).

        Raises:
            DistributedError: When no process group is initialised.
        """
        if not (dist.is_available() and dist.is_initialized()):
            raise DistributedError(
                f"{user} needs an initialised process group: start the processes with "
                f"torchrun (or ebmcore --nproc N) and call torch.distributed."
                f"init_process_group() first, or use ebmcore.launch.joined()")
        device = (torch.device("cuda", torch.cuda.current_device())
                  if dist.get_backend() == "nccl" else torch.device("cpu"))
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def active(self) -> bool:
        """Whether the job has more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes files and prints."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"RankGroup(rank={self.rank}, world_size={self.world_size})"

    def _call(self, what: str, op: Callable[[], T]) -> T:
        try:
            return op()
        except RuntimeError as exc:  # gloo and NCCL raise RuntimeError (or a subclass)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed: another rank stopped "
                f"(see its error) or did not answer within the process group's timeout "
                f"({first})") from exc

    # -- collectives -----------------------------------------------------------------------

    def mean(self, values: Sequence[float | torch.Tensor]) -> list[float]:
        """Return each value averaged over the ranks (as Python floats; one all-reduce)."""
        if not self.active:
            return [float(v.detach().item()) if isinstance(v, torch.Tensor) else float(v)
                    for v in values]
        stacked = torch.stack([torch.as_tensor(v).detach().to(self.device, torch.float64)
                               .reshape(()) for v in values])
        self._call("averaging the metrics", lambda: dist.all_reduce(stacked))
        return (stacked / self.world_size).tolist()

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        return not self.any_true(not flag)

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on some rank."""
        if not self.active:
            return bool(flag)
        t = torch.tensor([int(bool(flag))], dtype=torch.int32, device=self.device)
        self._call("agreeing with the other ranks", lambda: dist.all_reduce(t))
        return bool(t.item())

    def gather_objects(self, obj: T) -> list[T]:
        """Return every rank's ``obj`` in rank order (picklable; tensors best on the CPU)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        self._call("gathering state from the ranks", lambda: dist.all_gather_object(out, obj))
        return out

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along the first dimension, in rank order.

        The ranks may hold different numbers of rows (the rest of the shape must agree); the
        result is on ``tensor``'s device, on every rank.
        """
        if not self.active:
            return tensor
        local = tensor.detach().to(self.device)
        counts = torch.tensor([local.shape[0]], device=self.device)
        sizes = [torch.empty_like(counts) for _ in range(self.world_size)]
        self._call("gathering rows from the ranks", lambda: dist.all_gather(sizes, counts))
        rows = [int(s) for s in sizes]
        if max(rows) == 0:
            return tensor
        padded = local.new_zeros((max(rows), *local.shape[1:]))
        padded[:local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._call("gathering rows from the ranks", lambda: dist.all_gather(parts, padded))
        return torch.cat([p[:n] for p, n in zip(parts, rows, strict=True)]).to(tensor.device)

    def broadcast_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's values."""
        if not self.active:
            return
        for tensor in tensors:
            buf = tensor.detach()
            moved = buf.to(self.device, torch.uint8 if buf.dtype == torch.bool else buf.dtype)
            moved = moved.contiguous()
            self._call("broadcasting rank 0's state", lambda m=moved: dist.broadcast(m, 0))
            if moved is not buf:
                buf.copy_(moved)

    def average_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its average over the ranks (one all-reduce).

        This is the averaging ``DistributedDataParallel`` does, done after the backward pass:
        a parameter without a gradient on a rank counts as zero there, and keeps no gradient
        only when it has none on every rank (the optimiser then skips it, as it would in one
        process). Gradients of one dtype and device travel in one flat buffer.
        """
        if not self.active:
            return
        groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for p in params:
            groups.setdefault((p.dtype, p.device), []).append(p)
        for (dtype, _), group in groups.items():
            pieces = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
                      for p in group]
            # one flag per parameter rides along: which ranks had a gradient for it
            pieces.append(torch.tensor([p.grad is not None for p in group], dtype=dtype,
                                       device=group[0].device))
            flat = torch.cat(pieces).to(self.device)
            self._call("averaging the gradients", lambda f=flat: dist.all_reduce(f))
            flat = flat.to(group[0].device).div_(self.world_size)
            *chunks, flags = flat.split([p.numel() for p in group] + [len(group)])
            for p, chunk, had in zip(group, chunks, flags.tolist(), strict=True):
                p.grad = chunk.view(p.shape) if had > 0 else None

    def main_first(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 alone and tell every rank whether it worked.

        Returns ``fn()`` on rank 0 and ``None`` elsewhere. When ``fn`` raises, rank 0 raises
        its error and every other rank a :class:`DistributedError` quoting it, so no rank is
        left waiting for the others in a later collective.
        """
        if not self.active:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # shared with the other ranks, then re-raised
                error = exc
        message = [None if error is None else f"{type(error).__name__}: {error}"]
        self._call("hearing from rank 0", lambda: dist.broadcast_object_list(message, 0))
        if error is not None:
            raise error
        if message[0] is not None:
            raise DistributedError(f"rank 0 failed: {message[0]}")
        return result


# -- training -------------------------------------------------------------------------------


def share_chain_counts(loss: nn.Module, ranks: RankGroup) -> dict[str, int]:
    """Give this rank its share of each chain count of ``loss`` (see :data:`CHAIN_COUNTS`).

    Returns the counts over all ranks that were shared, by attribute name.

    Raises:
        ValueError: When a count is smaller than the number of ranks.
    """
    totals: dict[str, int] = {}
    if not ranks.active:
        return totals
    for name in getattr(loss, "chain_counts", CHAIN_COUNTS):
        value = getattr(loss, name, None)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if value < ranks.world_size:  # judged alike on every rank, so all of them raise
            raise ValueError(f"loss {name}={value} counts chains over all ranks, and is smaller "
                             f"than the {ranks.world_size} ranks: each needs at least one")
        start, stop = shard_range(value, ranks.rank, ranks.world_size)
        setattr(loss, name, stop - start)
        totals[name] = value
    return totals


def _sharded_keys(loss: nn.Module, state: dict[str, Any]) -> list[str]:
    names = getattr(loss, "sharded_state", SHARDED_STATE)
    return [key for key, value in state.items()
            if key.rsplit(".", 1)[-1] in names and isinstance(value, torch.Tensor)]


def gather_loss_state(loss: nn.Module, ranks: RankGroup) -> dict[str, Any]:
    """Return ``loss.state_dict()`` with every rank's persistent chains gathered (collective).

    The entries named by the loss's ``sharded_state`` (:data:`SHARDED_STATE`) hold every
    rank's rows in rank order; the others are this rank's.
    """
    state = loss.state_dict()
    if not ranks.active:
        return state
    state = state.copy()
    for key in _sharded_keys(loss, state):
        state[key] = ranks.gather_rows(state[key])
    return state


def split_loss_state(loss: nn.Module, state: dict[str, Any],
                     ranks: RankGroup) -> dict[str, Any]:
    """Return ``state`` (as :func:`gather_loss_state` wrote it) with this rank's chains only.

    The chains are split over the ranks with :func:`shard_range`, whatever the number of
    ranks that wrote them: the same split that :func:`share_chain_counts` gives the counts.
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


def earliest(found: Sequence[tuple[int, dict[str, float]] | None]
             ) -> tuple[int, dict[str, float]] | None:
    """The first bad step among the ranks' finiteness records (``None`` when none is bad)."""
    bad = [f for f in found if f is not None]
    return min(bad, key=lambda f: f[0]) if bad else None


def warn_unsharded_loader(loader: Any) -> None:
    """Warn when a DataLoader in a distributed run has no ``DistributedSampler``."""
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(getattr(loader, "sampler", None), DistributedSampler):
        warnings.warn("in a distributed run every rank iterates its own DataLoader: give it a "
                      "torch.utils.data.DistributedSampler, or every rank sees the same data",
                      stacklevel=3)


# -- sampling -------------------------------------------------------------------------------


def _check_same_x0(x0: torch.Tensor, ranks: RankGroup) -> None:
    """Raise unless every rank passed the same ``x0`` (shape, dtype and, closely, values)."""
    flat = x0.detach().double()
    mine = (tuple(x0.shape), str(x0.dtype), float(flat.sum()), float(flat.square().sum()))
    for rank, theirs in enumerate(ranks.gather_objects(mine)):
        same = theirs[:2] == mine[:2] and all(
            math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            for a, b in zip(theirs[2:], mine[2:], strict=True))
        if not same:
            raise ValueError(f"x0 differs between rank {ranks.rank} and rank {rank} (shape "
                             f"{mine[0]} vs {theirs[0]}): with distributed=True every rank "
                             f"passes the same x0, all the chains; each rank runs its share")


def chain_shards(n_chains: int, stride: int, world_size: int) -> list[tuple[int, int]]:
    """Each rank's chains ``[start, stop)`` in sharded sampling: blocks of ``stride`` chains.

    Keeping each block of the trajectory's stride together makes the traced chains of the
    shards, gathered, exactly chains ``0, s, 2s, ...`` of the whole batch.

    Raises:
        ValueError: When a rank would get no chain.
    """
    if -(-n_chains // stride) < world_size:
        what = "" if stride == 1 else f" in blocks of {stride} (the trace_chains stride)"
        raise ValueError(f"{n_chains} chains{what} cannot give each of the {world_size} ranks "
                         f"one: pass more chains" + (" or a larger trace_chains" if stride > 1
                                                     else ""))
    return [shard_range(n_chains, r, world_size, stride) for r in range(world_size)]


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    return value


def merge_diagnostics(parts: Sequence[dict[str, Any]], shards: Sequence[tuple[int, int]],
                      chain_keys: Sequence[str]) -> dict[str, Any]:
    """Merge the ranks' sampling diagnostics into those of the whole batch of chains.

    Per-chain entries (``chain_keys`` with one row per chain of the shard) are concatenated
    in chain order; ``nonfinite_chains`` is shifted to whole-batch indices; ``energy_trace``
    (a mean over chains) is averaged weighted by each shard's chains; other floating-point
    tensors of one shape on every rank (a swap acceptance, an adapted mass) are averaged
    over the ranks; anything else is rank 0's.

    Args:
        parts: Each rank's diagnostics, in rank order.
        shards: Each rank's chains ``(start, stop)``.
        chain_keys: Names of the per-chain entries (``Sampler.chain_diagnostics``).
    """
    counts = [stop - start for start, stop in shards]
    merged: dict[str, Any] = {}
    for key, first in parts[0].items():
        values = [part.get(key) for part in parts]
        tensors = all(isinstance(v, torch.Tensor) for v in values)
        if key == "nonfinite_chains" and tensors:
            merged[key] = torch.cat([v + start for v, (start, _) in zip(values, shards,
                                                                         strict=True)])
        elif tensors and key in chain_keys and all(
                v.ndim and v.shape[0] == n for v, n in zip(values, counts, strict=True)):
            merged[key] = torch.cat(values)
        elif tensors and first.is_floating_point() and all(
                v.shape == first.shape for v in values):
            weights = counts if key == "energy_trace" else [1] * len(values)
            total = sum(v.double() * w for v, w in zip(values, weights, strict=True))
            merged[key] = (total / sum(weights)).to(first.dtype)
        else:
            merged[key] = first
    merged["world_size"] = len(parts)
    merged["shards"] = [list(shard) for shard in shards]
    return merged


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def sample_sharded(run: Callable[..., SampleResult], energy: Any, x0: torch.Tensor,
                   n_steps: int, *, generator: torch.Generator | None, stride: int,
                   return_trajectory: bool, progress: bool, chain_keys: Sequence[str],
                   **kwargs: Any) -> SampleResult:
    """Sample ``x0``'s chains split over the ranks; gather the result on every rank.

    This is what :meth:`ebmcore.Sampler.sample` does with ``distributed=True`` (see there):
    every rank passes the same ``x0`` (all the chains), runs the block
    :func:`chain_shards` gives it with its own :func:`rank_generator` stream, and receives
    the whole batch's samples, trajectory (the traced chains ``0, s, 2s, ...`` of the whole
    batch, exactly as without sharding) and :func:`merge_diagnostics`. ``state`` stays this
    rank's; ``diagnostics["shards"]`` lists each rank's chains.

    Args:
        run: The sampler's single-process loop, called on the shard as
            ``run(energy, x0, n_steps, generator=..., stride=..., return_trajectory=...,
            progress=..., **kwargs)``.
        energy: The target.
        x0: All the chains' initial positions, the same on every rank.
        n_steps: Kept steps.
        generator: The caller's generator, seeded alike on every rank.
        stride: The trajectory's chain stride over the whole batch.
        return_trajectory: Record the traced chains.
        progress: Show rank 0's progress bar.
        chain_keys: The sampler's per-chain diagnostics (``Sampler.chain_diagnostics``).
        **kwargs: Passed to ``run``.
    """
    ranks = RankGroup.current("Sampler.sample(distributed=True)")
    started = time.perf_counter()
    _check_same_x0(x0, ranks)
    shards = chain_shards(x0.shape[0], stride, ranks.world_size)
    start, stop = shards[ranks.rank]
    result = run(energy, x0[start:stop], n_steps, generator=rank_generator(generator, ranks.rank),
                 stride=stride, return_trajectory=return_trajectory,
                 progress=progress and ranks.is_main, **kwargs)
    result.samples = ranks.gather_rows(result.samples)
    if result.trajectory is not None:
        # chains first for the gather, steps first again after it
        by_chain = result.trajectory.transpose(0, 1).contiguous()
        result.trajectory = ranks.gather_rows(by_chain).transpose(0, 1).contiguous()
    parts = ranks.gather_objects(_cpu(result.diagnostics))
    result.diagnostics = _to(merge_diagnostics(parts, shards, chain_keys), x0.device)
    result.diagnostics["seconds"] = time.perf_counter() - started
    return result
