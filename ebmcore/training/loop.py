"""The training loop: :class:`Trainer` runs ``loss(model, batch) -> backward -> step``.

The loop holds the run's state (model, loss, optimiser, step, history) and calls its parts:
batches (:mod:`ebmcore.training.batches`), the health policy
(:mod:`ebmcore.training.health`), rank agreement (:mod:`ebmcore.training.agreement`), the
loss's chains over ranks (:mod:`ebmcore.training.loss_state`), checkpoints
(:mod:`ebmcore.training.checkpoints`), callbacks and the weight average.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ebmcore.checkpoint import save_checkpoint
from ebmcore.energy import Energy, as_energy
from ebmcore.errors import TrainingRunawayWarning
from ebmcore.field import Field
from ebmcore.loss import Loss, LossOutput
from ebmcore.progress import ProgressBar
from ebmcore.ranks import RankGroup, rank_seed
from ebmcore.threads import fit_threads
from ebmcore.training import agreement, health
from ebmcore.training.batches import build_batches, confinement_sample
from ebmcore.training.callbacks import Callback, check_callbacks, run_callbacks
from ebmcore.training.checkpoints import (
    checkpoint_name,
    load_trainer_state,
    read_resumable,
    trainer_state,
)
from ebmcore.training.ema import EMA
from ebmcore.training.loss_state import share_chain_counts
from ebmcore.training.setup import build_optimizer, check_flag, model_device, resolve_loss
from ebmcore.validation import check_int, check_positive

#: The learning-rate schedules :class:`Trainer` takes (``None``: the optimiser's own rate).
LR_SCHEDULES = (None, "cosine")


class Trainer:
    """Train an energy or a field with a loss for a fixed number of steps.

    It adds to a hand-written loop only what such a loop tends to get wrong: reproducible
    batches from a seeded generator, gradient clipping, an exponential moving average of the
    weights, logging without a host synchronisation every step, a watch for non-finite steps,
    and checkpoints that resume bit for bit.

    Args:
        model: The model to train: an ``ebmcore.Energy``, or an ``ebmcore.field.Field`` for the
            simulation-free losses (flow matching, diffusion, equilibrium matching).
        loss: An ``ebmcore.Loss`` instance or a registered loss name.
        optimizer: ``None`` for Adam over the model's and the loss's parameters at ``lr``
            (torch's fused Adam where the parameters allow it:
            :func:`ebmcore.training.setup.fused_adam_fits`); a ``torch.optim.Optimizer``; or
            a callable that takes the parameter list and returns one.
        data: A data tensor ``(N, *event_shape)`` (shuffled each epoch), an
            ``ebmcore.Dataset`` (instance or registered name; fresh draws each step), or a
            ``torch.utils.data.DataLoader`` (its batches as they come).
        steps: Total optimisation steps :meth:`fit` runs to.
        batch_size: Points per step for tensor and data set sources, over all ranks in a
            distributed run (the global batch; each rank trains on its share).
        lr: Learning rate of the default Adam optimiser (3e-3 was tuned on PCD training of
            the mlp energy on 2-D toy data; 1e-3 learned markedly less in 2,000 steps).
        grad_clip: Clip the global gradient norm to this value (``None``: no clipping).
        ema: Decay of an exponential moving average of the weights (``None``: no EMA); the
            averaged model is :attr:`ema_model`.
        lr_schedule: ``None`` leaves the optimiser's rate alone; ``"cosine"`` sets every
            parameter group's rate before each step to ``lr * (1 + cos(pi * step / steps)) /
            2``, from ``lr`` at the first step down towards 0 at the last (a function of the
            step, so a resumed run continues on the same curve).
        callbacks: Callables run after every step as ``callback(trainer, output)``; one may
            call :meth:`request_stop`.
        progress: Show a progress bar on a terminal.
        log_every: Record the loss and metrics in the history every this many steps (and at
            the last step); recording is the only host synchronisation.
        checkpoint_dir: Directory for checkpoints ``step-XXXXXXXXX.pt`` (``None``: none).
        checkpoint_every: Write a checkpoint every this many steps (and at the end); needs
            ``checkpoint_dir``. ``None`` writes only at the end.
        seed: Seeds the trainer's own generators (data order and the loss's random draws).
        runaway_energy: A recorded loss or ``energy*`` metric larger than this in magnitude
            marks the run as running away: a :class:`~ebmcore.errors.TrainingRunawayWarning`
            is issued when it first happens and :attr:`runaway` names the step (``None``
            turns the check off). Healthy runs on the built-in data stay within tens;
            ``cd`` without an energy penalty reached 2.8e7 on ``rings``.
        skip_nonfinite: Opt in to skipping a step whose loss, gradients or negatives are
            non-finite instead of stopping: the optimiser does not step, the loss's state
            (a replay buffer, say) is put back as it was before the step, the step number is
            recorded in :attr:`skipped_steps`, and after ``MAX_SKIPPED_IN_A_ROW`` skipped
            steps in a row the run stops with :class:`~ebmcore.errors.TrainingDivergedError`.
            Costs a copy of the loss's state and one host synchronisation per step.
        distributed: Train on every rank of the initialised ``torch.distributed`` process
            group (every rank builds the same trainer and calls :meth:`fit`). Rank ``r``
            trains on rows ``[r b, (r + 1) b)`` of each global batch (``b = batch_size /
            world_size``; a DataLoader should carry a ``DistributedSampler``), with its own
            random stream for the loss and its share of the loss's persistent chains (see
            :mod:`ebmcore.training.loss_state`); gradients and logged metrics are averaged
            over the ranks, so every rank keeps the same weights. Rank 0 alone writes
            checkpoints, which hold every rank's chains and resume on any number of ranks. A
            stop request takes effect at the next logged step, where the ranks agree on it.
        compile: Run the loss's negative chains on the sampler's compiled backend
            (:meth:`ebmcore.Loss.use_compiled`: ``torch.compile`` over blocks of steps, see
            docs/performance.md). The compile cost is paid at the first step and once per
            process; checkpoints and resume are unchanged, and the same seed gives the same
            bits in this mode. The loss must run chains on a sampler with a compiled backend
            (``cd`` and ``pcd`` with ``langevin``, ``mala``, ``hmc`` or
            ``underdamped_langevin``). The loss's forward and backward and the optimiser step
            stay eager.
        threads: CPU threads for torch (and numba) in this process: ``None`` lets
            :func:`ebmcore.threads.fit_threads` choose for the size of a step (one thread for
            small models; the ``EBMCORE_THREADS`` environment variable overrides the rule).
            The count used is :attr:`threads`.

    Every step watches, without a host synchronisation, whether the loss's negative samples,
    its metrics (such as the energies), the loss or a parameter gradient turned non-finite;
    :meth:`fit` raises :class:`~ebmcore.errors.TrainingDivergedError` naming the first such
    step, the quantity and :attr:`last_checkpoint` on its log cadence, before writing a
    checkpoint and when a step raises (see :meth:`check_finite`).
    """

    def __init__(self, model: Energy | Field, loss: Loss | str, optimizer: Any = None,
                 data: Any = None, *, steps: int = 1000, batch_size: int = 256, lr: float = 3e-3,
                 grad_clip: float | None = None, ema: float | None = None,
                 lr_schedule: str | None = None, callbacks: Sequence[Callback] = (),
                 progress: bool = False,
                 log_every: int = 100, checkpoint_dir: str | Path | None = None,
                 checkpoint_every: int | None = None, seed: int = 0,
                 runaway_energy: float | None = 1e3, skip_nonfinite: bool = False,
                 distributed: bool = False, compile: bool = False,
                 threads: int | None = None) -> None:
        check_flag("distributed", distributed)
        self._ranks = RankGroup.current("Trainer(distributed=True)") if distributed else RankGroup()
        # a field is trained as it is; anything else must be an energy
        self.model = model if isinstance(model, Field) else as_energy(model)
        self.loss = resolve_loss(loss)
        self.steps = check_int("steps", steps, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.lr = check_positive("lr", lr)
        self.grad_clip = None if grad_clip is None else check_positive("grad_clip", grad_clip)
        if ema is not None and not 0.0 < check_positive("ema", ema) < 1.0:
            raise ValueError(f"ema must be a decay in (0, 1), got {ema}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        self.callbacks = check_callbacks(callbacks)
        self.progress = bool(progress)
        self.log_every = check_int("log_every", log_every, minimum=1)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        if checkpoint_every is not None:
            check_int("checkpoint_every", checkpoint_every, minimum=1)
            if self.checkpoint_dir is None:
                raise ValueError("checkpoint_every needs checkpoint_dir")
        self.checkpoint_every = checkpoint_every
        self.seed = check_int("seed", seed, minimum=0)
        self.runaway_energy = (None if runaway_energy is None
                               else check_positive("runaway_energy", runaway_energy))
        self.skip_nonfinite = check_flag("skip_nonfinite", skip_nonfinite)
        if check_flag("compile", compile):
            self.loss.use_compiled()
        self.compile = compile
        #: Steps skipped because they were non-finite (only with ``skip_nonfinite``).
        self.skipped_steps: list[int] = []

        self.device = model_device(self.model)
        # the data stream is global (alike on every rank); the loss's draws are the rank's own
        self.data_generator = torch.Generator().manual_seed(self.seed)
        self.loss_generator = torch.Generator(device=self.device).manual_seed(
            rank_seed(self.seed + 1, self.rank))
        self.loss.set_generator(self.loss_generator)
        share_chain_counts(self.loss, self._ranks)
        self.loss.to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._params += [p for p in self.loss.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(optimizer, self._params, self.lr)
        self._batches = build_batches(data, event_shape=self.model.event_shape,
                                      batch_size=self.batch_size,
                                      generator=self.data_generator, ranks=self._ranks)
        # only an energy has a confinement (a wall fitted to the data) to fit
        if isinstance(self.model, Energy) and not self.model.confinement_fitted:
            self.model.fit_confinement(
                confinement_sample(self._batches, self.seed).to(self.device))
        agreement.start_alike(self._ranks, self.model, self.loss)
        self._ema = None if ema is None else EMA(self.model, float(ema))
        #: The CPU threads torch (and numba) run on in this process (see ``threads``).
        self.threads = fit_threads(threads, work=self._step_work())

        self.step = 0
        self.history: list[dict[str, float]] = []
        #: The last checkpoint written or resumed from (``None`` before either).
        self.last_checkpoint: Path | None = None
        self._stop = False
        self._seconds = 0.0
        self._in_step = False
        self._watch = health.FiniteWatch()

    def _step_work(self) -> int:
        """The multiply-adds of one forward pass over this rank's batch (params x rows): the
        size of the operations a step is made of, which decides whether threads pay."""
        rows = self.batch_size // self.world_size
        return rows * sum(p.numel() for p in self.model.parameters())

    # -- state -----------------------------------------------------------------------------

    @property
    def ema_model(self) -> Energy | Field | None:
        """The model with exponentially averaged weights, or ``None`` without ``ema``."""
        return None if self._ema is None else self._ema.model

    @property
    def rank(self) -> int:
        """This process's rank (0 unless the trainer is distributed)."""
        return self._ranks.rank

    @property
    def world_size(self) -> int:
        """Number of processes training together (1 unless the trainer is distributed)."""
        return self._ranks.world_size

    @property
    def in_step(self) -> bool:
        """Whether a step was left partly applied (an exception or interrupt escaped it).

        A checkpoint written then would not resume exactly: the model, the loss's buffer or
        the random streams may already have moved on while :attr:`step` has not.
        """
        return self._in_step

    def request_stop(self) -> None:
        """Ask :meth:`fit` to stop after the current step (for callbacks and signal handlers)."""
        self._stop = True

    # -- one step --------------------------------------------------------------------------

    def train_step(self) -> LossOutput:
        """Run one optimisation step and return the loss output."""
        self._in_step = True
        loss_state = copy.deepcopy(self.loss.state_dict()) if self.skip_nonfinite else None
        x = self._batches.next().to(self.device, non_blocking=True)
        output = self.loss(self.model, x)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        self._ranks.average_gradients(self._params)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        if loss_state is not None and not health.all_finite(output, self._params, self._ranks):
            self._skip_step(loss_state)
            return output
        health.watch_step(self._watch, self.step + 1, output, self._params)
        if self.lr_schedule == "cosine":
            rate = 0.5 * self.lr * (1.0 + math.cos(math.pi * min(self.step, self.steps)
                                                   / self.steps))
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        self.optimizer.step()
        if self._ema is not None:
            self._ema.update()
        self.step += 1
        self._in_step = False
        return output

    def _skip_step(self, loss_state: dict[str, Any]) -> None:
        """Undo a non-finite step (``skip_nonfinite``): no update, the loss's state restored."""
        self.loss.load_state_dict(loss_state)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.skipped_steps.append(self.step)
        self._in_step = False
        if health.too_many_skipped(self.skipped_steps, self.step):
            first = self.skipped_steps[-health.MAX_SKIPPED_IN_A_ROW]
            raise self._diverged(
                first, f": the last {health.MAX_SKIPPED_IN_A_ROW} steps (to step {self.step}) "
                f"were all non-finite and skipped", ("loss",), sampler=True)

    # -- health ----------------------------------------------------------------------------

    def check_finite(self, cause: BaseException | None = None) -> None:
        """Raise if a step so far had a non-finite negative, metric, loss or gradient.

        This reads the device-side record each step keeps, so it synchronises with the
        device; :meth:`fit` calls it on its log cadence, before each checkpoint and when a
        step raises. In a distributed run it is collective: the ranks agree on the earliest
        bad step of any rank, and all raise.

        Args:
            cause: The exception a step raised, chained to the error when there is one.

        Raises:
            TrainingDivergedError: Naming the first bad step, the quantities that were
                non-finite then (the earliest in the computation first), the likely cause and
                :attr:`last_checkpoint`.
        """
        found = agreement.first_bad_on_any_rank(self._ranks, self._watch.first())
        self._raise_nonfinite(found, cause)

    def _raise_nonfinite(self, found: health.Found | None, cause: BaseException | None) -> None:
        """Raise the divergence error for ``found`` (the first bad step), if any."""
        if found is None:
            return
        raise health.nonfinite_error(found, self._watch, lr=self._lr_now(),
                                     last_checkpoint=self.last_checkpoint) from cause

    def _diverged(self, step: int, what: str, quantities: tuple[str, ...],
                  sampler: bool) -> Exception:
        return health.diverged(step, what, quantities, sampler=sampler, lr=self._lr_now(),
                               last_checkpoint=self.last_checkpoint)

    def _lr_now(self) -> float:
        return self.optimizer.param_groups[0].get("lr", self.lr)  # a user's optimizer may differ

    def _record(self, output: LossOutput) -> dict[str, float]:
        self.check_finite()
        record = {"step": float(self.step)}
        values = self._ranks.mean([output.loss, *output.metrics.values()])  # over the ranks
        record.update(zip(["loss", *output.metrics], values, strict=True))
        record["seconds"] = self._seconds
        # the history is scanned (for an earlier runaway) only when this record runs away
        found = health.runaway_in(record, self.runaway_energy)
        first = found is not None and self.runaway is None
        self.history.append(record)
        if first and self._ranks.is_main:  # the ranks log the same averages: warn once
            warnings.warn(health.runaway_message(self.step, *found, self.runaway_energy),
                          TrainingRunawayWarning, stacklevel=3)
        return record

    @property
    def runaway(self) -> dict[str, Any] | None:
        """The first recorded step whose loss or energy metric ran away, or ``None``.

        A dict with ``step``, ``quantity``, ``value`` and ``limit``, read from the history (so
        a resumed run reports it too); steps are those of the log cadence.
        """
        for record in self.history:
            found = health.runaway_in(record, self.runaway_energy)
            if found is not None:
                return {"step": int(record["step"]), "quantity": found[0], "value": found[1],
                        "limit": self.runaway_energy}
        return None

    # -- the loop --------------------------------------------------------------------------

    def fit(self) -> list[dict[str, float]]:
        """Train from the current step up to ``steps`` and return the metric history.

        Each history record holds ``step``, ``loss``, the loss's metrics and ``seconds`` (wall
        time spent in training steps so far, across resumes).
        """
        self.model.train()
        self._stop = stopping = False
        bar = ProgressBar(self.steps, enabled=self.progress and self._ranks.is_main,
                          label="train")
        bar.update(self.step)
        started = time.perf_counter()
        base = self._seconds
        while self.step < self.steps and not stopping:
            try:
                output = self.train_step()
                run_callbacks(self.callbacks, self, output)
            except Exception as exc:
                # a divergence often shows first as a symptom downstream (a sampler refusing
                # non-finite starting points): name the divergence, chained to the symptom.
                # This rank's record only: the others are not here to agree.
                self._raise_nonfinite(self._watch.first(), cause=exc)
                raise
            stopping = agreement.stop_now(self._ranks, self._stop, self.step, self.log_every,
                                          self.steps)
            last = self.step == self.steps or stopping
            if self.step % self.log_every == 0 or last:
                self._seconds = base + time.perf_counter() - started
                record = self._record(output)
                bar.update(0, extra=f"loss {record['loss']:.4g}")
            bar.update()
            if self.checkpoint_dir is not None and (
                    last or (self.checkpoint_every and self.step % self.checkpoint_every == 0)):
                self._seconds = base + time.perf_counter() - started
                self.check_finite()  # a diverged state is never written as a checkpoint
                self.save_checkpoint()
        bar.close()
        self._seconds = base + time.perf_counter() - started
        return self.history

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return everything needed to continue this run exactly.

        In a distributed run this is collective, and holds every rank's persistent chains
        (gathered in rank order) and random streams (``ranks``); the rest is rank 0's.
        """
        return trainer_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned into this (identically built) trainer.

        The state may come from a run on another number of ranks: the persistent chains are
        split over this run's ranks, rank ``r`` takes rank ``r``'s random streams where the
        writer had such a rank, and a fresh stream derived from the seed and the step
        otherwise. With as many ranks as the writer, the run continues exactly.
        """
        load_trainer_state(self, state)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write a checkpoint atomically and return its path.

        In a distributed run every rank calls this (it gathers the ranks' chains) and rank
        0 alone writes the file.

        Args:
            path: Target file; ``None`` writes ``checkpoint_dir/step-XXXXXXXXX.pt``.
        """
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("pass a path or construct the trainer with checkpoint_dir")
            path = self.checkpoint_dir / checkpoint_name(self.step)
        state = self.state_dict()
        written = (save_checkpoint(path, state, meta={"step": self.step})
                   if self._ranks.is_main else Path(path))
        self.last_checkpoint = written
        return written

    def resume(self, path: str | Path) -> Path:
        """Restore a checkpoint and return the file used; :meth:`fit` then continues.

        Args:
            path: A checkpoint file, or a directory whose newest readable ``step-*.pt`` is
                used (unreadable newer files are skipped with a warning).

        Raises:
            CheckpointError: When the file (or every file in the directory) is unreadable.
        """
        state, used = read_resumable(path)
        self.load_state_dict(state)
        self.last_checkpoint = used
        return used
