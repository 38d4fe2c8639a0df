"""Finding backends: ``torch`` is the core's own; the others come from the registry
(kind ``backend``, hook ``ebmcore_backends``)."""

from __future__ import annotations

import weakref

from ebmcore.errors import BackendUnavailableError, EbmcoreError
from ebmcore.registry import Registry, get_registry
from ebmcore.sampling.backend import Backend

#: Backend instances per registry (a plugin's backend is built once, on first use).
_BUILT: weakref.WeakKeyDictionary[Registry, dict[str, Backend]] = weakref.WeakKeyDictionary()


def _build(registry: Registry, name: str) -> Backend:
    target = registry.get("backend", name)
    backend = target()
    if not isinstance(backend, Backend):
        raise TypeError(f"backend {name!r} must build an ebmcore.sampling.Backend, got "
                        f"{type(backend).__name__}")
    return backend


def registered_backends() -> tuple[dict[str, Backend], dict[str, str]]:
    """Return ``(backends, broken)``: the registry's backends by name, and for each one that
    failed to load, why (so that one broken plugin never breaks ``auto``)."""
    registry = get_registry()
    built = _BUILT.setdefault(registry, {})
    backends: dict[str, Backend] = {}
    broken: dict[str, str] = {}
    for name in registry.names("backend"):
        if name not in built:
            try:
                built[name] = _build(registry, name)
            except (EbmcoreError, TypeError, ImportError) as exc:
                broken[name] = f"{type(exc).__name__}: {exc}"
                continue
        backends[name] = built[name]
    return backends, broken


def find_backend(name: str) -> Backend:
    """Return the registered backend ``name`` (not ``torch``, which the loop builds itself).

    Raises:
        ValueError: No backend of that name is registered (the message lists those that are).
        BackendUnavailableError: Its plugin failed to load.
    """
    backends, broken = registered_backends()
    if name in backends:
        return backends[name]
    if name in broken:
        raise BackendUnavailableError(f"backend={name!r} failed to load: {broken[name]}")
    known = ", ".join(["auto", "torch", *backends])
    raise ValueError(f"backend must be one of {known}, got {name!r}")
