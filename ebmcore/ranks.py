"""Ranks of a torch.distributed job: who holds what, their random streams and collectives.

:class:`RankGroup` is the handful of collectives ebmcore uses (averaging metrics and
gradients, agreeing on a flag, gathering objects and rows, broadcasting rank 0's state), and
the identity for a single process, so one code path serves both. The functions beside it say
which rows each rank holds (:func:`shard_range`, :func:`batch_share`) and derive each rank's
random stream (:func:`rank_seed`, :func:`rank_generator`). Everything here runs inside a
process group the caller (or :func:`ebmcore.launch.joined`) initialised; ebmcore starts no
processes of its own. Training (:mod:`ebmcore.training`) and sharded sampling
(:mod:`ebmcore.sharded_sampling`) build on this module; it imports neither.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ebmcore.errors import DistributedError
from ebmcore.validation import check_int

T = TypeVar("T")


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
    group's timeout) raises :class:`~ebmcore.errors.DistributedError` naming what was being
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
