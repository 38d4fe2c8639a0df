"""The trainer's historical home: ``from ebmcore.train import Trainer`` keeps working.

The trainer is now a loop plus parts in :mod:`ebmcore.training` (see there). This module
re-exports its public names, and still serves the names it imported before the split (the
``as`` imports below), so existing code that names ``ebmcore.train`` goes on working.
"""

from __future__ import annotations

# names this module imported before the split, importable from here as they were
from ebmcore.checkpoint import load_checkpoint as load_checkpoint
from ebmcore.checkpoint import save_checkpoint as save_checkpoint
from ebmcore.energy import Energy as Energy
from ebmcore.energy import as_energy as as_energy
from ebmcore.errors import CheckpointError as CheckpointError
from ebmcore.errors import TrainingDivergedError as TrainingDivergedError
from ebmcore.errors import TrainingRunawayWarning as TrainingRunawayWarning
from ebmcore.loss import Loss as Loss
from ebmcore.loss import LossOutput as LossOutput
from ebmcore.progress import ProgressBar as ProgressBar
from ebmcore.ranks import RankGroup as RankGroup
from ebmcore.ranks import batch_share as batch_share
from ebmcore.ranks import mix_seed as mix_seed
from ebmcore.ranks import rank_seed as rank_seed
from ebmcore.training.agreement import earliest as earliest
from ebmcore.training.batches import CONFINEMENT_SAMPLE
from ebmcore.training.batches import warn_unsharded_loader as warn_unsharded_loader
from ebmcore.training.callbacks import Callback
from ebmcore.training.checkpoints import CHECKPOINT_GLOB
from ebmcore.training.health import MAX_SKIPPED_IN_A_ROW
from ebmcore.training.loop import Trainer
from ebmcore.training.loss_state import gather_loss_state as gather_loss_state
from ebmcore.training.loss_state import share_chain_counts as share_chain_counts
from ebmcore.training.loss_state import split_loss_state as split_loss_state
from ebmcore.validation import check_int as check_int
from ebmcore.validation import check_points as check_points
from ebmcore.validation import check_positive as check_positive

__all__ = ["CHECKPOINT_GLOB", "CONFINEMENT_SAMPLE", "MAX_SKIPPED_IN_A_ROW", "Callback",
           "Trainer"]
