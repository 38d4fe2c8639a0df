"""ebmcore: energy-based modelling for PyTorch, built as a plugin registry.

Look components up by kind and name::

    import ebmcore
    energy = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0], cov=[[1.0, 0.5], [0.5, 1.0]])
    sampler = ebmcore.create("sampler", "mala", step_size=0.1)

Importing this package scans no entry points and imports neither torch nor numba: discovery
happens on the first lookup, and the torch-backed contracts load when first touched.
"""

from __future__ import annotations

import importlib
from typing import Any

from ebmcore.component import KINDS, Component, normalize_name
from ebmcore.errors import (
    AmbiguousComponentError,
    BackendUnavailableError,
    CheckpointError,
    EbmcoreError,
    PluginLoadError,
    UnknownComponentError,
    UnknownKindError,
)
from ebmcore.hookspecs import hookimpl
from ebmcore.registry import (
    PLUGIN_API_VERSION,
    InvalidParametersError,
    PluginRecord,
    Registry,
    create,
    describe,
    get,
    get_registry,
    kinds,
    names,
    plugins,
    use_registry,
)

__version__ = "0.1.0"

# Contracts that need torch load on first use, keeping ``import ebmcore`` light.
_LAZY = {
    "Energy": "ebmcore.energy",
    "NumbaFace": "ebmcore.energy",
    "Sampler": "ebmcore.sampler",
    "SamplerState": "ebmcore.sampler",
    "SampleResult": "ebmcore.sampler",
    "Loss": "ebmcore.loss",
    "LossOutput": "ebmcore.loss",
    "Dataset": "ebmcore.dataset",
    "save_checkpoint": "ebmcore.checkpoint",
    "load_checkpoint": "ebmcore.checkpoint",
    "save_model": "ebmcore.checkpoint",
    "load_model": "ebmcore.checkpoint",
    "build_model": "ebmcore.checkpoint",
}

__all__ = [
    "KINDS", "PLUGIN_API_VERSION", "AmbiguousComponentError", "BackendUnavailableError",
    "CheckpointError", "Component", "EbmcoreError", "InvalidParametersError", "PluginLoadError",
    "PluginRecord", "Registry", "UnknownComponentError", "UnknownKindError", "create",
    "describe", "get", "get_registry", "hookimpl", "kinds", "names", "normalize_name", "plugins",
    "use_registry", *_LAZY,
]


#: Submodules reachable as attributes (``ebmcore.diagnostics.rhat``) without an explicit import.
_SUBMODULES = ("checkpoint", "config", "diagnostics", "distributed", "evaluate", "plot", "testing",
               "train")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ebmcore.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ebmcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
