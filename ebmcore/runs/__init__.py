"""The jobs behind the command line: train, sample and evaluate, each into a run folder.

Each function takes a resolved configuration (see :mod:`ebmcore.config`) or plain settings,
writes its outputs into a folder and returns the metrics it wrote, so the CLI stays a thin
layer over it. Errors name the configuration keys and parameters (``train.steps``,
``settings['n_steps']``), never command-line options. One module per job:

- :mod:`~ebmcore.runs.build`: the components a configuration names;
- :mod:`~ebmcore.runs.folder`: the run folder, its JSON files and figures;
- :mod:`~ebmcore.runs.training`: training a run;
- :mod:`~ebmcore.runs.resuming`: resuming one from its newest readable checkpoint;
- :mod:`~ebmcore.runs.trained_model`: sampling and evaluating the model a run trained;
- :mod:`~ebmcore.runs.fields`: sampling a trained field as a flow and scoring it;
- :mod:`~ebmcore.runs.images`: what image runs add (replay pictures, the image report);
- :mod:`~ebmcore.runs.sampling`: sampling an energy or a saved model;
- :mod:`~ebmcore.runs.evaluating`: evaluating a saved model;
- :mod:`~ebmcore.runs.chains`: R-hat and ESS of the traced chains.
"""

from __future__ import annotations

from ebmcore.runs.build import build_training, is_image_dataset, load_energy
from ebmcore.runs.chains import DEFAULT_TRACE_CHAINS, chain_diagnostics
from ebmcore.runs.evaluating import evaluate_checkpoint
from ebmcore.runs.fields import is_flow_model, sample_field_run
from ebmcore.runs.folder import Log, prepare_output_dir, versions
from ebmcore.runs.images import ReplayPictures
from ebmcore.runs.resuming import resumable_checkpoints, resume_run
from ebmcore.runs.sampling import sample_run
from ebmcore.runs.training import train_run

__all__ = [
    "DEFAULT_TRACE_CHAINS", "Log", "ReplayPictures", "build_training", "chain_diagnostics",
    "evaluate_checkpoint", "is_flow_model", "is_image_dataset", "load_energy",
    "prepare_output_dir", "sample_field_run",
    "resumable_checkpoints", "resume_run", "sample_run", "train_run", "versions",
]
