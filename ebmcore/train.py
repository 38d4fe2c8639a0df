"""A small optional trainer over plain PyTorch, with exact, atomic resume.

:class:`Trainer` runs ``loss(model, batch) -> backward -> optimizer.step`` for a fixed number
of steps and adds only what a hand-written loop tends to get wrong: reproducible batches
from a seeded generator, gradient clipping, an exponential moving average of the weights,
logging without a host synchronisation every step, and checkpoints that resume bit for bit.
A checkpoint holds the model, optimiser, EMA, the loss's state (replay buffer, sampler
schedules), every random-number state (the trainer's generators and torch's global ones),
the data position and the step.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ebmcore.checkpoint import load_checkpoint, save_checkpoint
from ebmcore.distributed import (
    RankGroup,
    batch_share,
    earliest,
    gather_loss_state,
    mix_seed,
    rank_seed,
    share_chain_counts,
    split_loss_state,
    warn_unsharded_loader,
)
from ebmcore.energy import Energy, as_energy
from ebmcore.errors import CheckpointError, TrainingDivergedError, TrainingRunawayWarning
from ebmcore.loss import Loss, LossOutput
from ebmcore.progress import ProgressBar
from ebmcore.validation import check_int, check_points, check_positive

#: A callback runs after every step as ``callback(trainer, output)``.
Callback = Callable[["Trainer", LossOutput], Any]

#: The file names of the checkpoints a trainer writes into its ``checkpoint_dir``.
CHECKPOINT_GLOB = "step-*.pt"

#: Steps in a row that ``skip_nonfinite`` may skip before the run counts as diverged.
MAX_SKIPPED_IN_A_ROW = 10

#: Data points drawn to fit a model's confining wall (see ``Trainer._fit_confinement``).
CONFINEMENT_SAMPLE = 10_000


def _checkpoint_name(step: int) -> str:
    return f"step-{step:09d}.pt"


def _describe_nonfinite(bad: dict[str, float]) -> str:
    """Say in words which watched quantities were non-finite, the earliest one first."""
    words = []
    for name, value in bad.items():
        if name == "negatives":
            words.append(f"the negative samples turned non-finite in {int(value)} rows (the "
                         f"sampler's chains ran away on the model's energy)")
        elif name == "gradient":
            words.append(f"a parameter gradient = {value}")
        else:
            words.append(f"{'the loss' if name == 'loss' else name} = {value}")
    if len(words) == 1:
        return words[0]
    return f"{words[0]}, then {', '.join(words[1:-1])}{' and ' if words[2:] else ''}{words[-1]}"


class _TensorBatches:
    """Shuffled minibatches of a data tensor, one permutation per epoch (last partial dropped).

    ``rows`` picks this rank's part of each (global) batch in a distributed run.
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
        n = self.data.shape[0]
        if self.perm is None or self.pos + self.batch_size > n:
            self.perm = torch.randperm(n, generator=self.generator)
            self.pos = 0
        rows = self.perm[self.pos:self.pos + self.batch_size][self.rows]
        self.pos += self.batch_size
        return self.data[rows.to(self.data.device)]

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"])


class _DatasetBatches:
    """Fresh draws from a data set component every step (``rows`` of each, as above)."""

    def __init__(self, dataset: Any, batch_size: int, generator: torch.Generator,
                 rows: slice = slice(None)) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.generator = generator
        self.rows = rows

    def next(self) -> torch.Tensor:
        return self.dataset.sample(self.batch_size, generator=self.generator)[self.rows]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _loader_inputs(batch: Any) -> torch.Tensor:
    """Return the inputs of a loader's batch: the tensor, or the first of a tuple."""
    if isinstance(batch, (list, tuple)):
        batch = batch[0]  # (inputs, labels) loaders: the energy sees the inputs
    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"the DataLoader must yield tensors or (tensor, ...) tuples, got "
                        f"{type(batch).__name__}")
    return batch


class _LoaderBatches:
    """Batches of a ``DataLoader``, restartable mid-epoch by replaying the epoch's shuffle.

    The RNG states that seed an epoch's shuffle (torch's global generator and the loader's
    own, if it has one) are recorded when the epoch starts; resuming restores them, rebuilds
    the iterator and skips the batches already used. This is exact for loaders whose order
    depends only on those generators (the standard samplers).
    """

    def __init__(self, loader: Iterable[Any]) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None
        self.epoch_rng: dict[str, Any] | None = None
        self.pos = 0

    def _loader_generator(self) -> torch.Generator | None:
        return getattr(self.loader, "generator", None)

    def _start_epoch(self) -> None:
        gen = self._loader_generator()
        self.epoch_rng = {"torch": torch.get_rng_state(),
                          "loader": None if gen is None else gen.get_state()}
        self.iterator = iter(self.loader)
        self.pos = 0

    def next(self) -> torch.Tensor:
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
        return _loader_inputs(batch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_rng": self.epoch_rng, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch_rng, pos = state["epoch_rng"], int(state["pos"])
        self.iterator, self.epoch_rng, self.pos = None, epoch_rng, 0
        if epoch_rng is None:
            return
        current = torch.get_rng_state()
        torch.set_rng_state(epoch_rng["torch"])
        gen = self._loader_generator()
        if gen is not None and epoch_rng["loader"] is not None:
            gen.set_state(epoch_rng["loader"])
        self.iterator = iter(self.loader)
        for _ in range(pos):
            next(self.iterator)
        self.pos = pos
        torch.set_rng_state(current)


class _EMA:
    """An exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False)
        self._src = [p for p in model.parameters()]
        self._dst = [p for p in self.model.parameters()]
        self._src_buffers = list(model.buffers())
        self._dst_buffers = list(self.model.buffers())

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._dst, [p.detach() for p in self._src], 1.0 - self.decay)
        for dst, src in zip(self._dst_buffers, self._src_buffers, strict=True):
            dst.copy_(src)


class _FiniteWatch:
    """Remembers, on the device, the first step at which a watched quantity was non-finite.

    Reading a value on the host forces a synchronisation, which would stall a GPU pipeline if
    done every step. So each step only folds a handful of tiny device operations into a
    running record (the first bad step, which quantities were bad then and their values); the
    trainer reads the record on its log cadence, before every checkpoint and when a step
    raises (a divergence often surfaces first as some other error downstream).
    """

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        # (first bad step, 0 while all was finite; bad flags then; values then)
        self.record: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def update(self, step: int, names: tuple[str, ...], values: torch.Tensor,
               ok: torch.Tensor) -> None:
        """Record ``values`` (named ``names``) of ``step`` if it is the first with a bad one."""
        if self.record is None or names != self.names:
            if self.first() is not None:
                return  # the first bad step is already recorded (a rare sync: names changed)
            self.names = names
            self.record = (torch.zeros((), dtype=torch.int64, device=values.device),
                           torch.zeros(len(names), dtype=torch.bool, device=values.device),
                           torch.zeros_like(values))
        first_step, bad, kept = self.record
        newly = ok.all().logical_not_().logical_and_(first_step == 0)
        first_step.masked_fill_(newly, step)
        self.record = (first_step, torch.where(newly, ok.logical_not(), bad),
                       torch.where(newly, values, kept))

    def first(self) -> tuple[int, dict[str, float]] | None:
        """Return the first bad step and its non-finite quantities, or ``None`` (synchronises)."""
        if self.record is None:
            return None
        first_step, bad, kept = self.record
        step = int(first_step)
        if step == 0:
            return None
        return step, {name: value for name, flag, value in
                      zip(self.names, bad.tolist(), kept.tolist(), strict=True) if flag}


class Trainer:
    """Train an energy with a loss for a fixed number of steps.

    Args:
        model: The energy to train (an ``ebmcore.Energy``).
        loss: An ``ebmcore.Loss`` instance or a registered loss name.
        optimizer: ``None`` for Adam over the model's and the loss's parameters at ``lr``; a
            ``torch.optim.Optimizer``; or a callable that takes the parameter list and returns
            one.
        data: A data tensor ``(N, *event_shape)`` (shuffled each epoch), a data set
            component (name or instance with ``sample(n, generator)``, fresh draws each step),
            or a ``torch.utils.data.DataLoader`` (its batches as they come).
        steps: Total optimisation steps :meth:`fit` runs to.
        batch_size: Points per step for tensor and data set sources, over all ranks in a
            distributed run (the global batch; each rank trains on its share).
        lr: Learning rate of the default Adam optimiser (3e-3 was tuned on PCD training of
            the mlp energy on 2-D toy data; 1e-3 learned markedly less in 2,000 steps).
        grad_clip: Clip the global gradient norm to this value (``None``: no clipping).
        ema: Decay of an exponential moving average of the weights (``None``: no EMA); the
            averaged model is :attr:`ema_model`.
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
            :mod:`ebmcore.distributed`); gradients and logged metrics are averaged over the
            ranks, so every rank keeps the same weights. Rank 0 alone writes checkpoints,
            which hold every rank's chains and resume on any number of ranks. A stop request
            takes effect at the next logged step, where the ranks agree on it.
        compile: Run the loss's negative chains on the sampler's compiled backend
            (``backend="compiled"``: ``torch.compile`` over blocks of steps, see
            docs/performance.md). The compile cost is paid at the first step and once per
            process; checkpoints and resume are unchanged, and the same seed gives the same
            bits in this mode. The loss must run chains on a sampler with a compiled backend
            (``cd`` and ``pcd`` with ``langevin``, ``mala``, ``hmc`` or
            ``underdamped_langevin``). The loss's forward and backward and the optimiser step
            stay eager.

    Every step watches, without a host synchronisation, whether the loss's negative samples,
    its metrics (such as the energies), the loss or a parameter gradient turned non-finite;
    :meth:`fit` raises :class:`~ebmcore.errors.TrainingDivergedError` naming the first such
    step, the quantity and :attr:`last_checkpoint` on its log cadence, before writing a
    checkpoint and when a step raises (see :meth:`check_finite`).
    """

    def __init__(self, model: Energy, loss: Loss | str, optimizer: Any = None, data: Any = None,
                 *, steps: int = 1000, batch_size: int = 256, lr: float = 3e-3,
                 grad_clip: float | None = None, ema: float | None = None,
                 callbacks: Sequence[Callback] = (), progress: bool = False,
                 log_every: int = 100, checkpoint_dir: str | Path | None = None,
                 checkpoint_every: int | None = None, seed: int = 0,
                 runaway_energy: float | None = 1e3, skip_nonfinite: bool = False,
                 distributed: bool = False, compile: bool = False) -> None:
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be True or False, got {type(distributed).__name__}")
        self._ranks = RankGroup.current("Trainer(distributed=True)") if distributed else RankGroup()
        self.model = as_energy(model)
        self.loss = self._resolve_loss(loss)
        self.steps = check_int("steps", steps, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.lr = check_positive("lr", lr)
        self.grad_clip = None if grad_clip is None else check_positive("grad_clip", grad_clip)
        if ema is not None and not 0.0 < check_positive("ema", ema) < 1.0:
            raise ValueError(f"ema must be a decay in (0, 1), got {ema}")
        self.callbacks = self._check_callbacks(callbacks)
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
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f"skip_nonfinite must be True or False, got "
                            f"{type(skip_nonfinite).__name__}")
        self.skip_nonfinite = skip_nonfinite
        self.compile = self._compile_chains(self.loss, compile)
        #: Steps skipped because they were non-finite (only with ``skip_nonfinite``).
        self.skipped_steps: list[int] = []

        self.device = self._model_device()
        # the data stream is global (alike on every rank); the loss's draws are the rank's own
        self.data_generator = torch.Generator().manual_seed(self.seed)
        self.loss_generator = torch.Generator(device=self.device).manual_seed(
            rank_seed(self.seed + 1, self.rank))
        if hasattr(self.loss, "set_generator"):
            self.loss.set_generator(self.loss_generator)
        share_chain_counts(self.loss, self._ranks)
        self.loss.to(self.device)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._params += [p for p in self.loss.parameters() if p.requires_grad]
        self.optimizer = self._build_optimizer(optimizer)
        self._batches = self._build_batches(data)
        self._fit_confinement()
        # every rank starts from rank 0's weights, as DistributedDataParallel does
        self._ranks.broadcast_([*self.model.parameters(), *self.model.buffers(),
                                *self.loss.parameters()])
        self._ema = None if ema is None else _EMA(self.model, float(ema))

        self.step = 0
        self.history: list[dict[str, float]] = []
        #: The last checkpoint written or resumed from (``None`` before either).
        self.last_checkpoint: Path | None = None
        self._stop = False
        self._seconds = 0.0
        self._in_step = False
        self._watch = _FiniteWatch()

    # -- construction ----------------------------------------------------------------------

    @staticmethod
    def _compile_chains(loss: Loss, compile: Any) -> bool:
        """Switch the loss's chains to the compiled backend when ``compile`` asks for it."""
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {type(compile).__name__}")
        if not compile:
            return False
        sampler = getattr(loss, "sampler", None)
        if not hasattr(loss, "backend") or sampler is None:
            raise ValueError(f"compile=True compiles the loss's negative chains, and "
                             f"{type(loss).__name__} runs none; use a contrastive loss "
                             f"(cd, pcd, pt_cd) or compile=False")
        if not getattr(sampler, "supports_compiled", False):
            raise ValueError(f"compile=True needs a sampler with a compiled backend "
                             f"(langevin, mala, hmc, underdamped_langevin, and "
                             f"parallel_tempering over one of these); "
                             f"{type(sampler).__name__} has none")
        loss.backend = "compiled"
        return True

    @staticmethod
    def _resolve_loss(loss: Any) -> Loss:
        if isinstance(loss, str):
            import ebmcore

            loss = ebmcore.create("loss", loss)
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be an ebmcore.Loss or a loss name, got "
                            f"{type(loss).__name__}")
        return loss

    @staticmethod
    def _check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
        if callable(callbacks) or isinstance(callbacks, (str, bytes)):
            raise TypeError("callbacks must be a sequence of callables, e.g. (my_callback,)")
        callbacks = tuple(callbacks)
        for i, cb in enumerate(callbacks):
            if not callable(cb):
                raise TypeError(f"callbacks[{i}] must be callable, got {type(cb).__name__}")
        return callbacks

    def _model_device(self) -> torch.device:
        for tensor in [*self.model.parameters(), *self.model.buffers()]:
            return tensor.device
        return torch.device("cpu")

    def _build_optimizer(self, optimizer: Any) -> torch.optim.Optimizer:
        if optimizer is None:
            if not self._params:
                raise ValueError("the model and the loss have no trainable parameters")
            return torch.optim.Adam(self._params, lr=self.lr)
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        if callable(optimizer):
            built = optimizer(self._params)
            if not isinstance(built, torch.optim.Optimizer):
                raise TypeError(f"the optimizer factory must return a torch.optim.Optimizer, "
                                f"got {type(built).__name__}")
            return built
        raise TypeError(f"optimizer must be None, a torch.optim.Optimizer or a callable "
                        f"returning one, got {type(optimizer).__name__}")

    def _build_batches(self, data: Any) -> Any:
        if data is None:
            raise ValueError("data is required: a tensor, a data set (name or instance) or a "
                             "DataLoader")
        if isinstance(data, str):
            import ebmcore

            data = ebmcore.create("dataset", data)
        if isinstance(data, torch.utils.data.DataLoader):
            if self._ranks.active:
                warn_unsharded_loader(data)
            return _LoaderBatches(data)
        rows = self._batch_rows()
        if isinstance(data, torch.Tensor):
            check_points("data", data, self.model.event_shape)
            return _TensorBatches(data, self.batch_size, self.data_generator, rows)
        if callable(getattr(data, "sample", None)):
            return _DatasetBatches(data, self.batch_size, self.data_generator, rows)
        raise TypeError(f"data must be a tensor, a data set name or instance with "
                        f"sample(n, generator), or a DataLoader; got {type(data).__name__}")

    def _batch_rows(self) -> slice:
        """This rank's rows of each global batch (all of them in a single process)."""
        share = batch_share(self.batch_size, self.world_size)
        return slice(self.rank * share, (self.rank + 1) * share)

    def _fit_confinement(self) -> None:
        """Fit the model's confining wall to the data, if it has one and it is not yet fitted.

        The wall is fitted from the whole data tensor, from ``CONFINEMENT_SAMPLE`` draws of a
        data set (on a generator of their own, so the training batches do not change) or
        from the first batches of a loader (with torch's global RNG state and the loader's
        own generator restored).
        """
        fit = getattr(self.model, "fit_confinement", None)
        if not callable(fit) or getattr(self.model, "confinement_fitted", True):
            return
        batches = self._batches
        if isinstance(batches, _TensorBatches):
            sample = batches.data
        elif isinstance(batches, _DatasetBatches):
            generator = torch.Generator().manual_seed(self.seed + 2)
            sample = batches.dataset.sample(CONFINEMENT_SAMPLE, generator=generator)
        else:
            parts, n = [], 0
            own = getattr(batches.loader, "generator", None)  # a loader's own shuffle stream
            own_state = None if own is None else own.get_state()
            with torch.random.fork_rng(devices=[]):
                for batch in batches.loader:
                    parts.append(_loader_inputs(batch))
                    n += parts[-1].shape[0]
                    if n >= CONFINEMENT_SAMPLE:
                        break
            if own is not None:
                own.set_state(own_state)
            if not parts:
                raise ValueError("the DataLoader yielded no batches")
            sample = torch.cat(parts)
        fit(sample.to(self.device))

    # -- training --------------------------------------------------------------------------

    @property
    def ema_model(self) -> Energy | None:
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
        if loss_state is not None and not self._all_finite(output):
            self._skip_step(loss_state)
            return output
        self._watch_step(output)
        self.optimizer.step()
        if self._ema is not None:
            self._ema.update()
        self.step += 1
        self._in_step = False
        return output

    def _all_finite(self, output: LossOutput) -> bool:
        """Whether the loss, the gradients and the negatives are finite (synchronises)."""
        checks = [output.loss.detach().isfinite().all()]
        checks += [p.grad.isfinite().all() for p in self._params if p.grad is not None]
        if output.negatives is not None:
            checks.append(output.negatives.detach().isfinite().all())
        return self._ranks.all_true(bool(torch.stack(checks).all()))  # skip on all or none

    def _skip_step(self, loss_state: dict[str, Any]) -> None:
        """Undo a non-finite step (``skip_nonfinite``): no update, the loss's state restored."""
        self.loss.load_state_dict(loss_state)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.skipped_steps.append(self.step)
        self._in_step = False
        recent = self.skipped_steps[-MAX_SKIPPED_IN_A_ROW:]
        if len(recent) == MAX_SKIPPED_IN_A_ROW and recent[0] == self.step - len(recent) + 1:
            raise self._diverged(
                recent[0], f": the last {MAX_SKIPPED_IN_A_ROW} steps (to step {self.step}) were "
                f"all non-finite and skipped", ("loss",), sampler=True)

    def _watch_step(self, output: LossOutput) -> None:
        """Fold this step's finiteness into the watch: device operations only, no sync."""
        loss = output.loss.detach()
        # at least float32, so a large but finite half-precision metric does not overflow here
        dtype = torch.promote_types(loss.dtype, torch.float32)
        names: list[str] = []
        values: list[torch.Tensor] = []
        if output.negatives is not None:
            rows = output.negatives.detach().isfinite().logical_not_()
            if rows.ndim > 1:
                rows = rows.flatten(1).any(1)
            names.append("negatives")
            values.append(rows.sum().to(dtype))  # non-finite rows; 0 is healthy
        for name, value in output.metrics.items():
            names.append(name)
            values.append(torch.as_tensor(value).detach().to(loss.device, dtype).reshape(()))
        names.append("loss")
        values.append(loss.to(dtype).reshape(()))
        grads = [p.grad for p in self._params if p.grad is not None]
        if grads:
            # the largest |gradient| cannot overflow as a 2-norm can, and NaN propagates
            names.append("gradient")
            values.append(torch.nn.utils.get_total_norm(grads, math.inf).to(loss.device, dtype))
        stacked = torch.stack(values)
        ok = stacked.isfinite()
        if output.negatives is not None:
            ok[0] = stacked[0] == 0
        self._watch.update(self.step + 1, tuple(names), stacked, ok)

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
        found = self._watch.first()
        if self._ranks.active:
            found = earliest(self._ranks.gather_objects(found))
        self._raise_nonfinite(found, cause)

    def _raise_nonfinite(self, found: tuple[int, dict[str, float]] | None,
                         cause: BaseException | None) -> None:
        """Raise the divergence error for ``found`` (the first bad step), if any."""
        if found is None:
            return
        step, bad = found
        raise self._diverged(step, f" at step {step}: {_describe_nonfinite(bad)}", tuple(bad),
                             sampler="negatives" in self._watch.names) from cause

    def _diverged(self, step: int, what: str, quantities: tuple[str, ...],
                  sampler: bool) -> TrainingDivergedError:
        """The error for a run that diverged (``what`` follows "training diverged"), with the
        likely cause and the last good checkpoint."""
        lr = self.optimizer.param_groups[0].get("lr", self.lr)  # a user's optimizer may differ
        hint = " or the sampler's step size" if sampler else ""
        where = ("no checkpoint was written before it" if self.last_checkpoint is None
                 else f"last good checkpoint: {self.last_checkpoint}")
        return TrainingDivergedError(
            f"training diverged{what}; likely cause: the learning rate (lr={lr:g}){hint} is "
            f"too large; {where}", step=step, quantities=quantities,
            checkpoint=None if self.last_checkpoint is None else str(self.last_checkpoint))

    def _record(self, output: LossOutput) -> dict[str, float]:
        self.check_finite()
        record = {"step": float(self.step)}
        values = self._ranks.mean([output.loss, *output.metrics.values()])  # over the ranks
        record.update(zip(["loss", *output.metrics], values, strict=True))
        record["seconds"] = self._seconds
        # the history is scanned (for an earlier runaway) only when this record runs away
        found = self._runaway_in(record)
        first = found is not None and self.runaway is None
        self.history.append(record)
        if first and self._ranks.is_main:  # the ranks log the same averages: warn once
            name, value = found
            warnings.warn(
                f"training is running away at step {self.step}: {name} = {value:.4g} exceeds "
                f"{self.runaway_energy:g} in magnitude; the energies grow without bound (raise "
                f"the loss's alpha, or lower the learning rate or the sampler's step size)",
                TrainingRunawayWarning, stacklevel=3)
        return record

    def _runaway_in(self, record: dict[str, float]) -> tuple[str, float] | None:
        if self.runaway_energy is None:
            return None
        for name, value in record.items():
            if (name == "loss" or name.startswith("energy")) and abs(value) > self.runaway_energy:
                return name, value
        return None

    @property
    def runaway(self) -> dict[str, Any] | None:
        """The first recorded step whose loss or energy metric ran away, or ``None``.

        A dict with ``step``, ``quantity``, ``value`` and ``limit``, read from the history (so
        a resumed run reports it too); steps are those of the log cadence.
        """
        for record in self.history:
            found = self._runaway_in(record)
            if found is not None:
                return {"step": int(record["step"]), "quantity": found[0], "value": found[1],
                        "limit": self.runaway_energy}
        return None

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
                for callback in self.callbacks:
                    callback(self, output)
            except Exception as exc:
                # a divergence often shows first as a symptom downstream (a sampler refusing
                # non-finite starting points): name the divergence, chained to the symptom.
                # This rank's record only: the others are not here to agree.
                self._raise_nonfinite(self._watch.first(), cause=exc)
                raise
            stopping = self._stopping()
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

    def _stopping(self) -> bool:
        """Whether to stop after this step: on request, or where all ranks agree on one."""
        if not self._ranks.active:
            return self._stop
        # ranks must stop at the same step: a request counts at the next logged step
        due = self.step % self.log_every == 0 or self.step == self.steps
        return due and self._ranks.any_true(self._stop)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Return everything needed to continue this run exactly.

        In a distributed run this is collective, and holds every rank's persistent chains
        (gathered in rank order) and random streams (``ranks``); the rest is rank 0's.
        """
        streams = self._ranks.gather_objects({"loss": self.loss_generator.get_state(),
                                              "torch": torch.get_rng_state()})
        rng: dict[str, Any] = {"data": self.data_generator.get_state(),
                               "loss": streams[0]["loss"], "torch": streams[0]["torch"]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = list(torch.cuda.get_rng_state_all())
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": None if self._ema is None else self._ema.model.state_dict(),
            "loss": gather_loss_state(self.loss, self._ranks),
            "rng": rng,
            "data": self._batches.state_dict(),
            "history": self.history,
            "skipped_steps": list(self.skipped_steps),
            "seconds": self._seconds,
            "config": {"batch_size": self.batch_size, "seed": self.seed,
                       "loss": type(self.loss).__name__, "model": type(self.model).__name__},
        }
        if self._ranks.active:
            state["ranks"] = {"world_size": self.world_size,
                              "loss": [s["loss"] for s in streams],
                              "torch": [s["torch"] for s in streams]}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned into this (identically built) trainer.

        The state may come from a run on another number of ranks: the persistent chains are
        split over this run's ranks, rank ``r`` takes rank ``r``'s random streams where the
        writer had such a rank, and a fresh stream derived from the seed and the step
        otherwise. With as many ranks as the writer, the run continues exactly.
        """
        config = state["config"]
        for key, mine in (("loss", type(self.loss).__name__),
                          ("model", type(self.model).__name__)):
            if config[key] != mine:
                raise ValueError(f"the checkpoint was written with {key} {config[key]}, but "
                                 f"this trainer has {mine}")
        if config["batch_size"] != self.batch_size:
            raise ValueError(f"the checkpoint used batch_size={config['batch_size']}, this "
                             f"trainer has batch_size={self.batch_size}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if (state["ema"] is None) != (self._ema is None):
            raise ValueError("the checkpoint and this trainer disagree on using an EMA")
        if self._ema is not None:
            self._ema.model.load_state_dict(state["ema"])
        self.loss.load_state_dict(split_loss_state(self.loss, state["loss"], self._ranks))
        self.loss.to(self.device)
        rng = state["rng"]
        ranks = state.get("ranks") or {"loss": [rng["loss"]], "torch": [rng["torch"]]}
        self.data_generator.set_state(rng["data"])
        if self.rank < len(ranks["loss"]):
            self.loss_generator.set_state(ranks["loss"][self.rank])
        else:  # a rank the writer did not have
            self.loss_generator.manual_seed(
                rank_seed(mix_seed(self.seed + 1, int(state["step"])), self.rank))
        self._batches.load_state_dict(state["data"])
        # after the loader replay, which uses it; rank 0's for a rank the writer did not have
        torch.set_rng_state(ranks["torch"][self.rank] if self.rank < len(ranks["torch"])
                            else rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.skipped_steps = [int(v) for v in state.get("skipped_steps", [])]
        self._seconds = float(state["seconds"])
        self._in_step = False
        self._watch = _FiniteWatch()  # what went wrong after the checkpoint is undone

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
            path = self.checkpoint_dir / _checkpoint_name(self.step)
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
        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob(CHECKPOINT_GLOB), reverse=True)
            if not candidates:
                raise CheckpointError(f"no checkpoints ({CHECKPOINT_GLOB}) in {str(path)!r}")
            for candidate in candidates:
                try:
                    state = load_checkpoint(candidate)
                except CheckpointError as exc:
                    warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
                    continue
                self._load_checked(state, candidate)
                self.last_checkpoint = candidate
                return candidate
            raise CheckpointError(f"every checkpoint in {str(path)!r} is unreadable")
        state = load_checkpoint(path)
        self._load_checked(state, path)
        self.last_checkpoint = path
        return path

    def _load_checked(self, state: dict[str, Any], path: Path) -> None:
        missing = {"step", "model", "optimizer", "ema", "loss", "rng", "data", "history",
                   "config", "seconds"} - set(state)
        if missing:
            raise CheckpointError(f"{str(path)!r} is not a Trainer checkpoint (missing "
                                  f"{', '.join(sorted(missing))})")
        self.load_state_dict(state)
