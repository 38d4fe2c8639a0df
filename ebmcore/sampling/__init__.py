"""Sampling's machinery: backends as strategies, ``auto``'s choice, and what a run keeps.

- :mod:`.backend`: the :class:`Backend` contract (``supports`` says whether it can run a
  case and why not; ``run`` runs it and returns a :class:`RawRun`), and :class:`RunSpec`.
- :mod:`.torch_loop`: :class:`TorchBackend`, the sampler's ``step`` in a Python loop.
- :mod:`.recording`: :class:`Recorder`, the kept steps (trajectory, ``on_keep``, energy
  trace) for every backend that steps in Python.
- :mod:`.lookup`: backends from the registry (kind ``backend``, hook ``ebmcore_backends``).
- :mod:`.auto`: which backend runs a case, and why (a rule for short runs, timed trials
  and a cache for long ones).
- :mod:`.trajectory_file`: :class:`TrajectoryFile`, an ``on_keep`` hook writing ``.npy``.

:meth:`ebmcore.Sampler.sample` is the one loop that ties them together.
"""

from __future__ import annotations

from ebmcore.sampling.auto import Choice, choose, clear_auto_cache
from ebmcore.sampling.backend import Backend, KeepHook, RawRun, Reason, RunSpec
from ebmcore.sampling.lookup import find_backend, registered_backends
from ebmcore.sampling.recording import Recorder, nonfinite_rows
from ebmcore.sampling.torch_loop import TorchBackend
from ebmcore.sampling.trajectory_file import TrajectoryFile

__all__ = ["Backend", "Choice", "KeepHook", "RawRun", "Reason", "Recorder", "RunSpec",
           "TorchBackend", "TrajectoryFile", "choose", "clear_auto_cache", "find_backend",
           "nonfinite_rows", "registered_backends"]
