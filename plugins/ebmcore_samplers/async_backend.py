"""The ``async`` backend: NUTS chains that each run their own transitions (CPU).

``nuts(asynchronous=True)`` is run here by ``backend="auto"`` (or any NUTS with
``backend="async"``): the kernels of :mod:`ebmcore_samplers._nuts_async` advance every chain
by one leaf per batched energy call, a chain whose tree ends starting its next transition at
once, instead of waiting at every transition for the deepest tree in the batch. Warm-up
follows NUTS's own adaptation (per-chain dual averaging, a mass pooled over the chains in
Stan's windows, the step-size heuristic after each mass update), with a barrier at each
window's end. A ``time_limit`` or ``should_stop`` is asked after every batched call; when it
fires no chain starts another transition, the transitions under way finish, and the run
returns what every chain has completed. The run cannot call ``on_keep`` (``auto`` then runs
the lockstep NUTS on the torch backend).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ebmcore.sampling.backend import Backend, RawRun, Reason, RunSpec
from ebmcore.sampling.recording import StopCheck, nonfinite_rows
from ebmcore_samplers import _nuts_async as kern
from ebmcore_samplers import _nuts_numba as lock
from ebmcore_samplers._nuts_tree import leaf_plan
from ebmcore_samplers.adaptation import (
    DUAL_GAMMA,
    DUAL_KAPPA,
    DUAL_T0,
    Welford,
    find_reasonable_step_size,
    mass_windows,
)
from ebmcore_samplers.metric import Metric

if TYPE_CHECKING:
    from ebmcore.energy import Energy
    from ebmcore.sampler import Sampler
    from ebmcore_samplers.nuts import NUTS, NUTSState


def plan_table(max_depth: int) -> np.ndarray:
    """The lockstep kernels' checkpoint plan (:func:`~ebmcore_samplers._nuts_tree.leaf_plan`)
    of every depth below ``max_depth`` as one array: row ``2**depth - 1 + leaf`` holds
    ``(slot, lo, hi)`` for that leaf of a ``2**depth``-leaf half."""
    return np.array([row for depth in range(max_depth) for row in leaf_plan(depth)],
                    dtype=np.int64)


class AsyncBackend(Backend):
    """Runs NUTS chains asynchronously on the CPU (float32 or float64); see the module."""

    name: ClassVar[str] = "async"
    stops: ClassVar[bool] = True
    measurable: ClassVar[bool] = False
    rule_priority: ClassVar[int] = 10

    def supports(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                 run: RunSpec) -> Reason:
        """``None`` for a NUTS sampler on CPU float32 / float64 chains, else why not."""
        from ebmcore_samplers.nuts import NUTS

        if not isinstance(sampler, NUTS):
            return f"it runs nuts only, not {type(sampler).__name__}"
        if not lock.supports(x):
            return f"it runs CPU float32 / float64 chains, not {x.dtype} on {x.device}"
        return None

    def rule_picks(self, sampler: Sampler, energy: Energy, x: torch.Tensor,
                   run: RunSpec) -> bool:
        """Yes for ``nuts(asynchronous=True)``."""
        return bool(getattr(sampler, "asynchronous", False))

    def rule_reason(self, sampler: Sampler, energy: Energy, x: torch.Tensor) -> str:
        """Why the rule picked this backend."""
        return "nuts(asynchronous=True): each chain runs its own transitions"

    def run(self, sampler: Sampler, energy: Energy, x0: torch.Tensor, run: RunSpec,
            generator: torch.Generator) -> RawRun:
        """Warm up and sample every chain asynchronously (see the module docstring)."""
        return _AsyncRun(sampler, energy, x0, run, generator).execute()  # type: ignore[arg-type]


def pool_chains(counts: np.ndarray, means: np.ndarray, m2: np.ndarray,
                dense: bool) -> Welford:
    """The :class:`Welford` of all chains' positions from each chain's own running sums
    (Chan et al.'s pooling: the same estimate as one accumulator fed every row).

    Args:
        counts: Positions per chain ``(B,)``.
        means: Each chain's mean ``(B, D)``.
        m2: Each chain's sum of squared deviations ``(B, 1, D)`` (diagonal) or outer
            products ``(B, D, D)`` (dense).
        dense: Whether ``m2`` is dense.
    """
    n_c = torch.from_numpy(np.asarray(counts, dtype=np.float64))
    means_t = torch.from_numpy(np.asarray(means, dtype=np.float64))
    m2_t = torch.from_numpy(np.asarray(m2, dtype=np.float64))
    n = float(n_c.sum())
    mean = (n_c[:, None] * means_t).sum(0) / n
    dev = means_t - mean
    pooled = Welford(means_t.shape[1], dense=dense)
    pooled.n = int(n)
    pooled.mean = mean
    if dense:
        pooled.m2 = m2_t.sum(0) + torch.einsum("c,ci,ck->ik", n_c, dev, dev)
    else:
        pooled.m2 = m2_t[:, 0].sum(0) + (n_c[:, None] * dev.square()).sum(0)
    return pooled


class _AsyncRun:
    """One run's arrays and its segments between adaptation barriers."""

    def __init__(self, sampler: NUTS, energy: Energy, x0: torch.Tensor, run: RunSpec,
                 generator: torch.Generator) -> None:
        self.sampler, self.energy, self.run, self.generator = sampler, energy, run, generator
        self.state: NUTSState = sampler.init(energy, x0.detach().clone())
        x = self.state.x
        self.shape = x.shape
        b, d = x.shape[0], x[0].numel()
        self.b, self.d, self.dt = b, d, x.dtype
        npdt = np.float32 if x.dtype == torch.float32 else np.float64
        self.vec = np.zeros((lock.NV, b, d), dtype=npdt)
        self.sca = np.zeros((lock.NS, b), dtype=npdt)
        self.ints = np.zeros((lock.NI, b), dtype=np.int64)
        self.ck = np.zeros((3, sampler.max_tree_depth, b, d), dtype=npdt)
        self.xc = np.zeros((b, d), dtype=npdt)
        self.ai = np.zeros((kern.NAI, b), dtype=np.int64)
        self.af = np.zeros((kern.NAF, b), dtype=np.float64)
        self.vec[lock.PX] = x.reshape(b, d).numpy()
        self.vec[lock.PG] = self.state.grad.reshape(b, d).numpy()
        self.sca[lock.PE] = self.state.energy.numpy()
        self.rng = np.zeros((b, 2), dtype=np.uint64)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
        kern.seed_streams(self.rng, seed)
        n_traced = -(-b // run.trace_stride)
        self.trace = np.zeros(max(run.n_kept, 1), dtype=np.float64)
        self.traj = np.zeros((run.n_kept, n_traced, d) if run.return_trajectory
                             else (1, 1, d), dtype=npdt)
        dense = sampler.adapt_mass == "dense"
        self.dense = dense
        self.wn = np.zeros(b, dtype=np.int64)
        self.wmean = np.zeros((b, d), dtype=np.float64)
        self.wm2 = np.zeros((b, d if dense else 1, d), dtype=np.float64)
        self.adapt_step = bool(sampler.adapt_step_size and run.burn_in > 0)
        self.stop = StopCheck(run) if run.stoppable else None
        self.stopped = False
        self.plan = plan_table(sampler.max_tree_depth)
        self.cfg_f = np.array([-float(sampler.max_energy_error), sampler.target_accept,
                               DUAL_GAMMA, DUAL_T0, DUAL_KAPPA, sampler.jitter])

    def _cfg_i(self, seg_end: int, window: tuple[int, int]) -> np.ndarray:
        run = self.run
        return np.array([self.sampler.max_tree_depth, run.burn_in, seg_end, window[0],
                         window[1], self.adapt_step, run.thin, run.n_kept, run.trace_stride,
                         run.return_trajectory, self.dense], dtype=np.int64)

    def _search_step_size(self) -> None:
        """The step-size heuristic from the step sizes in use; dual averaging restarts."""
        st = self.state
        x = torch.from_numpy(self.vec[lock.PX].copy()).view(self.shape)
        g = torch.from_numpy(self.vec[lock.PG].copy()).view(self.shape)
        e = torch.from_numpy(self.sca[lock.PE].copy())
        eps = torch.from_numpy(self.af[kern.BASE].copy()).to(self.dt)
        eps, searched = find_reasonable_step_size(self.energy, x, e, g, eps, st.metric,
                                                  self.generator, with_count=True)
        phase = kern.NG_WARM if self.run.burn_in > 0 else kern.NG_KEPT
        self.ai[phase] += searched
        self.af[kern.BASE] = eps.double().numpy()
        if self.adapt_step:
            self._restart_dual()

    def _restart_dual(self) -> None:
        """Dual averaging starts over from the step sizes in use (as
        :meth:`~ebmcore_samplers.adaptation.DualAveraging.restart`)."""
        log_eps = np.log(self.af[kern.BASE])
        self.af[kern.MU] = log_eps + math.log(10.0)
        self.af[kern.LOGSTEP] = log_eps
        self.af[kern.LOGBAR] = 0.0
        self.af[kern.HBAR] = 0.0
        self.af[kern.DAT] = 0.0

    def _pooled_mass(self) -> None:
        """Replace the mass by the window's estimate pooled over the chains."""
        pooled = pool_chains(self.wn, self.wmean, self.wm2, self.dense)
        self.state.metric = Metric.from_covariance(pooled.covariance(), self.dt,
                                                   self.state.x.device)
        self.wn[:] = 0
        self.wmean[:] = 0.0
        self.wm2[:] = 0.0

    def _evaluator(self, rows: np.ndarray | None) -> Any:
        compiled = self.state.compiled
        if compiled is not None:
            return lambda z: compiled(self.energy, z)
        evaluate_rows = lock.rows_evaluator(self.energy, self.shape[1:])
        return evaluate_rows(None if rows is None else torch.from_numpy(rows.copy()))

    def _segment(self, seg_end: int, window: tuple[int, int]) -> None:
        """Run every chain to transition ``seg_end``, one batched energy call per leaf."""
        kind, minv, msqrt = lock._metric_arrays(self.state.metric, self.dt)
        cfg_i = self._cfg_i(seg_end, window)
        args = (self.vec, self.sca, self.ints, self.ai, self.af, self.rng)
        m = kern.start_segment(*args, self.xc, minv, msqrt, kind, cfg_i, self.cfg_f)
        xc_t = torch.from_numpy(self.xc)
        take_rows = getattr(self.energy, "take_rows", None) is not None
        evaluate = self._evaluator(None if m == self.b or not take_rows
                                   else self.ints[lock.ACT, :m])
        xm = xc_t[:m]
        while m > 0:
            e, g = evaluate(xm)
            m_new = kern.leaf(self.vec, self.ck, self.sca, self.ints, self.ai, self.af,
                              self.rng, self.plan, self.xc, lock._as_array(g, self.dt),
                              lock._as_array(e, self.dt), m, minv, msqrt, kind, self.wn,
                              self.wmean, self.wm2, self.trace, self.traj, cfg_i, self.cfg_f)
            if self.stop is not None and not self.stopped and self.stop():
                # No chain starts another transition; those under way finish.
                self.stopped = True
                cfg_i[kern.SEG_END] = 0
            if m_new != m:
                m = m_new
                xm = xc_t[:m]
                if take_rows and m:
                    evaluate = self._evaluator(self.ints[lock.ACT, :m])

    def execute(self) -> RawRun:
        """Run the segments, then build the final state and the raw tallies."""
        run, st = self.run, self.state
        self.af[kern.BASE] = st.step_size.double().numpy()
        if st.search_step_size:
            self._search_step_size()
        elif self.adapt_step:
            self._restart_dual()
        windows = mass_windows(run.burn_in, "stan") if self.sampler.adapt_mass else []
        for window in windows:
            self._segment(window[1], window)
            if self.stopped:
                return self._raw()
            self._pooled_mass()
            if self.adapt_step:
                self._search_step_size()
        self._segment(run.n_total, (-1, -1))
        return self._raw()

    def _raw(self) -> RawRun:
        run, st, b = self.run, self.state, self.b
        x = torch.from_numpy(self.vec[lock.PX].copy()).view(self.shape)
        e = torch.from_numpy(self.sca[lock.PE].copy())
        g = torch.from_numpy(self.vec[lock.PG].copy()).view(self.shape)
        new = object.__new__(type(st))
        new.__dict__.update(st.__dict__, x=x, energy=e, grad=g,
                            step_size=torch.from_numpy(self.af[kern.BASE].copy()).to(self.dt),
                            search_step_size=False, dual=None, welford=None)
        # Every chain completed ``done`` transitions (some one more, after a stop).
        done = int(self.ai[kern.ITER].min())
        kept_rows = min(run.n_kept, max(0, done - run.burn_in) // run.thin)
        trace = torch.from_numpy(self.trace[:kept_rows] / b).to(self.dt)
        trace_steps = torch.arange(1, kept_rows + 1, dtype=torch.long) * run.thin
        trajectory = None
        if run.return_trajectory:
            trajectory = torch.from_numpy(self.traj).view(run.n_kept, -1, *self.shape[1:])
            trajectory = trajectory[:kept_rows]
        kept = np.maximum(self.ai[kern.ITER] - run.burn_in, 0)
        ran = done > run.burn_in  # every chain has kept steps
        steps = np.maximum(kept, 1)
        nonfinite = nonfinite_rows(x) | ~torch.isfinite(e)
        return RawRun(
            samples=x.clone(), state=new, trajectory=trajectory, energy_trace=trace,
            energy_trace_steps=trace_steps, nonfinite=nonfinite,
            acceptance=(torch.from_numpy(self.af[kern.ACCSUM] / steps).to(self.dt) if ran
                        else None),
            divergences=torch.from_numpy(self.ai[kern.NDIV].copy()),
            n_grad_warmup=torch.from_numpy(self.ai[kern.NG_WARM].copy()),
            n_grad_sampling=torch.from_numpy(self.ai[kern.NG_KEPT].copy()),
            tree_depth=torch.from_numpy(self.af[kern.DEPTHSUM] / steps) if ran else None,
            n_steps_done=done if self.stopped else None,
            stopped_early=self.stop.reason if self.stopped and self.stop is not None else None)
