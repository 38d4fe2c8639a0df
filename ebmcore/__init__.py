"""ebmcore: energy-based modelling for PyTorch, built as a plugin registry.

Look components up by kind and name::

    import ebmcore
    energy = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0], cov=[[1.0, 0.5], [0.5, 1.0]])
    sampler = ebmcore.create("sampler", "mala", step_size=0.1)

The top level holds what a user needs: the lookups, the contracts to implement, what a
plugin declares itself with, saving and loading models, and the errors to catch. The rest
lives in its submodule (``ebmcore.registry``, ``ebmcore.checkpoint``, ``ebmcore.runs``,
...), each reachable as ``ebmcore.<name>`` without an import.

Importing this package scans no entry points and imports neither torch nor numba: discovery
happens on the first lookup, and the torch-backed contracts load when first touched.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ebmcore.component import Component
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
    Registry,
    create,
    describe,
    get,
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
    "Field": "ebmcore.field",
    "save_model": "ebmcore.checkpoint",
    "load_model": "ebmcore.checkpoint",
}

#: Names the top level no longer exports, and the module that holds each (they still resolve
#: here, with a DeprecationWarning, for one release).
_MOVED = {
    "KINDS": "ebmcore.component",
    "normalize_name": "ebmcore.component",
    "PluginRecord": "ebmcore.registry",
    "get_registry": "ebmcore.registry",
    "save_checkpoint": "ebmcore.checkpoint",
    "load_checkpoint": "ebmcore.checkpoint",
    "build_model": "ebmcore.checkpoint",
}

__all__ = [
    "PLUGIN_API_VERSION", "AmbiguousComponentError", "BackendUnavailableError",
    "CheckpointError", "Component", "EbmcoreError", "InvalidParametersError", "PluginLoadError",
    "Registry", "UnknownComponentError", "UnknownKindError", "create", "describe", "get",
    "hookimpl", "kinds", "names", "plugins", "use_registry", *_LAZY,
]


#: Submodules reachable as attributes (``ebmcore.diagnostics.rhat``) without an explicit import.
_SUBMODULES = ("checkpoint", "config", "diagnostics", "distributed", "evaluate", "evaluation",
               "inference_data", "plot", "runs", "testing", "threads", "train", "training")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ebmcore.{name}")
    if name in _MOVED:
        warnings.warn(f"ebmcore.{name} is deprecated; use {_MOVED[name]}.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ebmcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
