"""Sampling with the chains split over the ranks of a torch.distributed job.

:meth:`ebmcore.Sampler.sample` with ``distributed=True`` calls :func:`sample_sharded`: every
rank passes the same starting points (all the chains), runs a contiguous block of them
(:func:`chain_shards`) on its own random stream (:func:`ebmcore.ranks.rank_generator`), and
receives the whole batch's samples, traced trajectory and merged diagnostics
(:func:`merge_diagnostics`). The collectives come from :class:`ebmcore.ranks.RankGroup`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ebmcore.ranks import RankGroup, rank_generator, shard_range

if TYPE_CHECKING:
    from ebmcore.sampler import SampleResult

__all__ = ["chain_shards", "merge_diagnostics", "sample_sharded"]


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
