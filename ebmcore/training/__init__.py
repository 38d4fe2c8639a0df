"""Training: a loop (:class:`Trainer`) and the parts it calls, one job per module.

- :mod:`~ebmcore.training.loop`: the :class:`Trainer` and its step loop.
- :mod:`~ebmcore.training.batches`: tensor, data set and DataLoader sources of batches.
- :mod:`~ebmcore.training.health`: the non-finite, skipping and runaway policies.
- :mod:`~ebmcore.training.checkpoints`: the checkpoint state, writing names and resuming.
- :mod:`~ebmcore.training.agreement`: where the ranks of a distributed run agree.
- :mod:`~ebmcore.training.loss_state`: a loss's persistent chains split over the ranks.
- :mod:`~ebmcore.training.callbacks`, :mod:`~ebmcore.training.ema`,
  :mod:`~ebmcore.training.setup`: callbacks, the weight average, building the parts.
"""

from __future__ import annotations

from ebmcore.training.batches import CONFINEMENT_SAMPLE
from ebmcore.training.callbacks import Callback
from ebmcore.training.checkpoints import CHECKPOINT_GLOB
from ebmcore.training.health import MAX_SKIPPED_IN_A_ROW
from ebmcore.training.loop import Trainer

__all__ = ["CHECKPOINT_GLOB", "CONFINEMENT_SAMPLE", "MAX_SKIPPED_IN_A_ROW", "Callback",
           "Trainer"]
