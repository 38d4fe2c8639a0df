"""A training run's health: non-finite steps, skipped steps and runaway energies.

Three policies live here, each a small function or class the trainer's loop calls:

- **Non-finite** (always on): :func:`watch_step` folds, without a host synchronisation,
  whether the step's negatives, metrics, loss or gradient turned non-finite into a
  :class:`FiniteWatch`; the trainer reads it on its log cadence, before a checkpoint and when
  a step raises, and raises :class:`~ebmcore.errors.TrainingDivergedError`
  (:func:`diverged`) naming the first bad step.
- **Skipping** (``skip_nonfinite``): :func:`all_finite` judges a step before the optimiser
  moves; :func:`too_many_skipped` says when the run must stop anyway.
- **Runaway** (``runaway_energy``): :func:`runaway_in` finds a recorded loss or energy
  metric beyond the limit; the trainer warns once with
  :class:`~ebmcore.errors.TrainingRunawayWarning`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ebmcore.errors import TrainingDivergedError
from ebmcore.loss import LossOutput
from ebmcore.ranks import RankGroup

#: Steps in a row that ``skip_nonfinite`` may skip before the run counts as diverged.
MAX_SKIPPED_IN_A_ROW = 10

#: The first bad step and its non-finite quantities (name -> value), as a watch reports it.
Found = tuple[int, dict[str, float]]


def describe_nonfinite(bad: dict[str, float]) -> str:
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


class FiniteWatch:
    """Remembers, on the device, the first step at which a watched quantity was non-finite.

    Reading a value on the host forces a synchronisation, which would stall a GPU pipeline if
    done every step; and each small tensor operation costs a few microseconds of dispatch on
    any device. So a step only writes its raw values (the loss, the metrics, the count of
    non-finite negatives, each gradient's smallest and largest entry) into one row of a small
    device buffer (:meth:`push`: one ``stack`` and one ``fill_``). Every :data:`ROWS` steps,
    and whenever the record is read, the buffered rows are folded on the device into the
    running record (the first bad step, which quantities were bad then and their values).
    The trainer reads the record on its log cadence, before every checkpoint and when a step
    raises (a divergence often surfaces first as some other error downstream).
    """

    #: Steps buffered before they are folded into the record.
    ROWS = 64

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        # (first bad step, 0 while all was finite; bad flags then; values then)
        self.record: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # the buffered rows' layout: the quantities' names and how many raw gradient
        # extremes follow the other values (the "gradient" quantity is their largest |.|)
        self._layout: tuple[tuple[str, ...], int] | None = None
        self._rows: torch.Tensor | None = None
        self._steps: torch.Tensor | None = None
        self._count = 0

    def push(self, step: int, names: tuple[str, ...], values: Sequence[torch.Tensor],
             n_extremes: int = 0) -> None:
        """Buffer step ``step``'s values: one 0-d tensor per name in ``names`` except a last
        ``"gradient"``, whose value is the largest magnitude of the ``n_extremes`` tensors
        that end ``values`` (each gradient's smallest and largest entries). All of one dtype
        and device; a ``"negatives"`` value counts non-finite rows (0 is healthy)."""
        layout = (names, n_extremes)
        if layout != self._layout or self._count == self.ROWS:
            self.fold()
            if layout != self._layout:
                self._layout = layout
                self._rows = values[0].new_empty((self.ROWS, len(values)))
                self._steps = torch.zeros(self.ROWS, dtype=torch.int64,
                                          device=values[0].device)
        assert self._rows is not None and self._steps is not None
        torch.stack(tuple(values), out=self._rows[self._count])
        self._steps[self._count].fill_(step)
        self._count += 1

    def _merge(self, names: tuple[str, ...], steps: torch.Tensor, values: torch.Tensor,
               ok: torch.Tensor) -> None:
        """Fold rows of ``values`` ``(k, len(names))`` at ``steps`` ``(k,)`` into the record."""
        if self.record is None or names != self.names:
            if self.first() is not None:
                return  # the first bad step is already recorded (a rare sync: names changed)
            self.names = names
            self.record = (torch.zeros((), dtype=torch.int64, device=values.device),
                           torch.zeros(len(names), dtype=torch.bool, device=values.device),
                           torch.zeros_like(values[0]))
        first_step, bad, kept = self.record
        row_bad = ok.all(1).logical_not_()
        row = row_bad.to(torch.uint8).argmax()  # the first bad row (0 when none is)
        newly = row_bad[row].logical_and_(first_step == 0)
        self.record = (torch.where(newly, steps[row], first_step),
                       torch.where(newly, ok[row].logical_not(), bad),
                       torch.where(newly, values[row], kept))

    def fold(self) -> None:
        """Fold the buffered rows into the record (device operations only)."""
        if not self._count:
            return
        assert self._layout is not None and self._rows is not None
        names, n_extremes = self._layout
        rows, steps = self._rows[:self._count], self._steps[:self._count]
        self._count = 0
        if n_extremes:
            extremes = rows[:, rows.shape[1] - n_extremes:].abs().amax(1, keepdim=True)
            rows = torch.cat([rows[:, :rows.shape[1] - n_extremes], extremes], 1)
        ok = rows.isfinite()
        if names and names[0] == "negatives":
            ok[:, 0] = rows[:, 0] == 0
        self._merge(names, steps, rows, ok)

    def first(self) -> Found | None:
        """Return the first bad step and its non-finite quantities, or ``None`` (synchronises)."""
        self.fold()
        if self.record is None:
            return None
        first_step, bad, kept = self.record
        step = int(first_step)
        if step == 0:
            return None
        return step, {name: value for name, flag, value in
                      zip(self.names, bad.tolist(), kept.tolist(), strict=True) if flag}


def extremes(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's smallest and largest entry, 0-d tensors in that order (empty tensors
    left out; NaN propagates).

    Their largest magnitude is ``torch.nn.utils.get_total_norm(tensors, inf)``, from each
    tensor's ``aminmax``: on the CPU that norm costs about 2 ms for an MLP of 3 x 256 units
    (its infinity norm is not vectorised), a tenth of a flow-matching step, against 0.2 ms
    here.
    """
    return [end for t in tensors if t.numel()  # aminmax refuses an empty tensor
            for end in torch.aminmax(t.detach())]


def watch_step(watch: FiniteWatch, step: int, output: LossOutput,
               params: Sequence[torch.Tensor]) -> None:
    """Buffer step ``step``'s finiteness in ``watch``: device operations only, no sync.

    Watched, in the order of the computation: the negatives (the count of non-finite rows),
    each metric, the loss and the largest absolute parameter gradient.
    """
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
    ends = extremes([p.grad for p in params if p.grad is not None])
    if ends:
        # the largest |gradient| cannot overflow as a 2-norm can, and NaN propagates
        names.append("gradient")
        same = ends[0].dtype == dtype and ends[0].device == loss.device
        values += ends if same else [end.to(loss.device, dtype) for end in ends]
    watch.push(step, tuple(names), values, len(ends))


def all_finite(output: LossOutput, params: Sequence[torch.Tensor], ranks: RankGroup) -> bool:
    """Whether the loss, the gradients and the negatives are finite on every rank (syncs)."""
    checks = [output.loss.detach().isfinite().all()]
    checks += [p.grad.isfinite().all() for p in params if p.grad is not None]
    if output.negatives is not None:
        checks.append(output.negatives.detach().isfinite().all())
    return ranks.all_true(bool(torch.stack(checks).all()))  # skip on all ranks or none


def too_many_skipped(skipped_steps: Sequence[int], step: int) -> bool:
    """Whether the last :data:`MAX_SKIPPED_IN_A_ROW` steps up to ``step`` were all skipped."""
    recent = skipped_steps[-MAX_SKIPPED_IN_A_ROW:]
    return len(recent) == MAX_SKIPPED_IN_A_ROW and recent[0] == step - len(recent) + 1


def diverged(step: int, what: str, quantities: tuple[str, ...], *, sampler: bool, lr: float,
             last_checkpoint: Path | None) -> TrainingDivergedError:
    """The error for a run that diverged (``what`` follows "training diverged").

    Args:
        step: The first bad step.
        what: What went wrong, from " at step ..." on.
        quantities: The non-finite quantities.
        sampler: Whether the loss drew negatives (the sampler's step size is then suspect).
        lr: The optimiser's learning rate.
        last_checkpoint: The last good checkpoint, or ``None``.
    """
    hint = " or the sampler's step size" if sampler else ""
    where = ("no checkpoint was written before it" if last_checkpoint is None
             else f"last good checkpoint: {last_checkpoint}")
    return TrainingDivergedError(
        f"training diverged{what}; likely cause: the learning rate (lr={lr:g}){hint} is "
        f"too large; {where}", step=step, quantities=quantities,
        checkpoint=None if last_checkpoint is None else str(last_checkpoint))


def nonfinite_error(found: Found, watch: FiniteWatch, *, lr: float,
                    last_checkpoint: Path | None) -> TrainingDivergedError:
    """The error for the first bad step ``found`` of ``watch``."""
    step, bad = found
    return diverged(step, f" at step {step}: {describe_nonfinite(bad)}", tuple(bad),
                    sampler="negatives" in watch.names, lr=lr, last_checkpoint=last_checkpoint)


def runaway_in(record: dict[str, float], limit: float | None) -> tuple[str, float] | None:
    """The first loss or ``energy*`` entry of ``record`` beyond ``limit`` in magnitude."""
    if limit is None:
        return None
    for name, value in record.items():
        if (name == "loss" or name.startswith("energy")) and abs(value) > limit:
            return name, value
    return None


def runaway_message(step: int, name: str, value: float, limit: float) -> str:
    """The warning for a run whose ``name`` reached ``value`` beyond ``limit`` at ``step``."""
    return (f"training is running away at step {step}: {name} = {value:.4g} exceeds "
            f"{limit:g} in magnitude; the energies grow without bound (raise the loss's "
            f"alpha, or lower the learning rate or the sampler's step size)")
