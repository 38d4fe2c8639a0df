"""Helpers for testing ebmcore plugins, also loaded as a pytest plugin (entry point ``pytest11``).

- :func:`isolated_registry`: a fresh, empty registry made active inside a ``with`` block.
- ``ebmcore_registry``: the same as a pytest fixture.
- Conformance checks for plugin authors, one per kind: :func:`check_energy`,
  :func:`check_sampler`, :func:`check_loss` (with :class:`KnownAnswer` cases),
  :func:`check_model` (and :func:`build_model`, which builds a model as the core does),
  :func:`check_dataset`, and for the simulation-free kinds :func:`check_interpolant`,
  :func:`check_coupling` and :func:`check_integrator`.
- :func:`child_venv`: a throw-away venv that sees this interpreter's packages, to install a
  plugin into and run it as a user would.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from ebmcore.registry import Registry, use_registry

_LAZY = {
    "check_energy": "ebmcore.testing.energy_checks",
    "check_sampler": "ebmcore.testing.sampler_checks",
    "check_backend": "ebmcore.testing.sampler_checks",
    "check_loss": "ebmcore.testing.loss_checks",
    "KnownAnswer": "ebmcore.testing.loss_checks",
    "check_model": "ebmcore.testing.model_checks",
    "build_model": "ebmcore.testing.model_checks",
    "check_dataset": "ebmcore.testing.dataset_checks",
    "check_interpolant": "ebmcore.testing.flow_checks",
    "check_coupling": "ebmcore.testing.flow_checks",
    "check_integrator": "ebmcore.testing.flow_checks",
    "child_venv": "ebmcore.testing.venvs",
}

__all__ = ["isolated_registry", *_LAZY]


@contextlib.contextmanager
def isolated_registry(*, entry_points: bool = False) -> Iterator[Registry]:
    """Make a fresh registry active for the duration of a ``with`` block.

    Args:
        entry_points: Also discover installed plugins. By default the registry starts empty
            and a test adds plugin objects with ``registry.register(obj, name=...)``.
    """
    with use_registry(Registry(entry_points=entry_points)) as registry:
        yield registry


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ebmcore.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
