"""What a run keeps, written once for every backend that steps in Python.

:class:`Recorder` decides which steps are kept (burn-in, thinning), fills the trajectory
(with its chain stride), calls ``on_keep`` and gathers the energy trace; the torch loop and
the compiled backend's blocks both feed it. Fused kernels, which run the whole loop in one
call, record inside the kernel and return the same arrays. :class:`Tallies` keeps the
per-chain running sums of the step infos (acceptance, divergences, gradient counts, tree
depth) and :class:`StopCheck` a run's ``time_limit`` and ``should_stop``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch

from ebmcore.sampling.backend import RunSpec

#: The per-step info keys every gradient sampler shares (see ``docs/sampling.md``).
N_GRAD_KEY = "n_grad"
TREE_DEPTH_KEY = "tree_depth"


class Recorder:
    """The kept steps of one run: trajectory, ``on_keep`` calls and energy trace.

    Args:
        run: The run (``n_steps``, ``thin``, ``on_keep``, ``return_trajectory``,
            ``trace_stride``).
        like: The chains ``(B, *event_shape)``: dtype, device and shape of what is kept.
    """

    def __init__(self, run: RunSpec, like: torch.Tensor) -> None:
        self.run = run
        self.n_kept = run.n_kept
        self.kept = 0
        n_traced = -(-like.shape[0] // run.trace_stride)
        self.trajectory = (torch.empty((self.n_kept, n_traced, *like.shape[1:]),
                                       dtype=like.dtype, device=like.device)
                           if run.return_trajectory else None)
        self._trace: list[torch.Tensor] = []
        self._trace_steps: list[int] = []
        self._like = like

    def keeps(self, i: int) -> bool:
        """Whether kept-phase step ``i`` (from 0, after burn-in) is kept."""
        return (i + 1) % self.run.thin == 0 and self.kept < self.n_kept

    def keep(self, i: int, x: torch.Tensor | None = None, *,
             traced: torch.Tensor | None = None,
             energy_mean: torch.Tensor | None = None) -> None:
        """Record kept-phase step ``i`` (which :meth:`keeps`).

        Args:
            i: The kept-phase step (from 0).
            x: Every chain's positions (needed for ``on_keep``; the trajectory takes
                chains ``0, s, 2s, ...`` of it).
            traced: The traced chains' positions already picked, when ``x`` is not at hand.
            energy_mean: The mean energy at this step, for the trace (``None``: not traced).
        """
        if energy_mean is not None:
            self._trace.append(energy_mean)
            self._trace_steps.append(i + 1)
        if self.trajectory is not None:
            if traced is None:
                stride = self.run.trace_stride
                traced = x if stride == 1 else x[::stride]
            self.trajectory[self.kept].copy_(traced)
        if self.run.on_keep is not None:
            self.run.on_keep(self.kept, x)
        self.kept += 1

    def trace(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(energy_trace, energy_trace_steps)`` gathered so far."""
        values = (torch.stack(self._trace).reshape(-1) if self._trace
                  else torch.empty(0, dtype=self._like.dtype, device=self._like.device))
        return values, torch.tensor(self._trace_steps, dtype=torch.long)


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """Return a ``(B,)`` mask of the rows of ``x`` that hold a non-finite value.

    A finite total proves every row finite in one fast reduction; otherwise (a non-finite
    value, or huge finite values whose sum overflows) every row is checked exactly.
    """
    flat = x.detach().reshape(x.shape[0], -1)
    if bool(torch.isfinite(flat.sum())):
        return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    return ~torch.isfinite(flat).all(1)


def evenly_spaced(n: int, k: int) -> list[int]:
    """Return up to ``k`` indices spread evenly over ``range(n)``, always including the last."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({round((j + 1) * n / k) - 1 for j in range(k)})


class Tallies:
    """Running per-chain sums of a run's step infos (memory ``O(B)``, whatever the length).

    Burn-in steps add to the warm-up gradient count only; kept-phase steps add to the
    acceptance, divergence, sampling gradient count and tree-depth sums.

    Args:
        acceptance_key: The info key of the acceptance probability, or ``None``.
        divergence_key: The info key of the divergence flag, or ``None``.
    """

    def __init__(self, acceptance_key: str | None, divergence_key: str | None) -> None:
        self.acceptance_key = acceptance_key
        self.divergence_key = divergence_key
        self.accept: torch.Tensor | None = None
        self.divergent: torch.Tensor | None = None
        self.n_grad_warmup: torch.Tensor | None = None
        self.n_grad_sampling: torch.Tensor | None = None
        self.tree_depth: torch.Tensor | None = None
        self.burn_in_done = 0
        self.steps_done = 0

    @staticmethod
    def _add(total: torch.Tensor | None, value: torch.Tensor,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        if total is None:  # a copy: the sampler may hand the same tensor every step
            return value.to(dtype or value.dtype, copy=True)
        return total.add_(value)

    def warmup(self, info: Mapping[str, torch.Tensor]) -> None:
        """Count one burn-in step."""
        self.burn_in_done += 1
        n_grad = info.get(N_GRAD_KEY)
        if n_grad is not None:
            self.n_grad_warmup = self._add(self.n_grad_warmup, n_grad, torch.long)

    def kept(self, info: Mapping[str, torch.Tensor]) -> None:
        """Count one kept-phase step."""
        self.steps_done += 1
        key = self.acceptance_key
        if key is not None and key in info:
            self.accept = self._add(self.accept, info[key])
        key = self.divergence_key
        if key is not None and key in info:
            self.divergent = self._add(self.divergent, info[key], torch.long)
        n_grad = info.get(N_GRAD_KEY)
        if n_grad is not None:
            self.n_grad_sampling = self._add(self.n_grad_sampling, n_grad, torch.long)
        depth = info.get(TREE_DEPTH_KEY)
        if depth is not None:
            self.tree_depth = self._add(self.tree_depth, depth, torch.float64)

    def acceptance(self) -> torch.Tensor | None:
        """Per-chain mean acceptance over the kept-phase steps run, or ``None``."""
        if self.accept is None or self.steps_done == 0:
            return None
        return self.accept / self.steps_done

    def mean_tree_depth(self) -> torch.Tensor | None:
        """Per-chain mean tree depth over the kept-phase steps run, or ``None``."""
        if self.tree_depth is None or self.steps_done == 0:
            return None
        return self.tree_depth / self.steps_done


class StopCheck:
    """A run's ``time_limit`` and ``should_stop``, asked after every step.

    Args:
        run: The run (its ``time_limit`` in seconds from now, and its ``should_stop``).
    """

    def __init__(self, run: RunSpec) -> None:
        self.deadline = (None if run.time_limit is None
                         else time.perf_counter() + run.time_limit)
        self.should_stop = run.should_stop
        self.reason: str | None = None

    def __call__(self) -> bool:
        """Whether to stop now; sets :attr:`reason` (``"time_limit"`` or ``"should_stop"``)."""
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self.reason = "time_limit"
        elif self.should_stop is not None and self.should_stop():
            self.reason = "should_stop"
        return self.reason is not None
