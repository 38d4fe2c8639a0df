"""Deprecated: :class:`FusedBackendMixin`, the old glue between a sampler and the kernels.

A sampler now declares its kernel by implementing
:class:`ebmcore_samplers.kernels.backend.FusedKernelSampler` (``_fused_params`` and
``fused_refusal``); the ``numba`` and ``cuda`` backend objects do the rest. This module
keeps the old name importable for one release.
"""

from __future__ import annotations

import warnings
from typing import Any


class _FusedBackendMixin:
    """A base that satisfies :class:`~.backend.FusedKernelSampler` once ``_fused_params``
    is implemented (deprecated: implement the two methods directly)."""

    def _fused_params(self) -> tuple[str, dict[str, Any]]:
        """Return ``(method, params)``; subclasses must implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fused_params()")

    def fused_refusal(self) -> str | None:
        """No refusal by default."""
        return None


def __getattr__(name: str) -> Any:
    if name == "FusedBackendMixin":
        warnings.warn("ebmcore_samplers.kernels.mixin.FusedBackendMixin is deprecated: "
                      "implement ebmcore_samplers.kernels.backend.FusedKernelSampler "
                      "(_fused_params and fused_refusal) instead", DeprecationWarning,
                      stacklevel=2)
        return _FusedBackendMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
