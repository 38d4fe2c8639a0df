"""Which distribution supplied each component of a run, and what to say when one is missing.

Runs record, for every component they name, the plugin, distribution and version that
provided it (:func:`run_provenance`; checkpoints and ``metrics.json`` carry it). When a later
command meets a recorded component that is not installed, :func:`require_recorded` raises an
error that names the distribution and the ``pip install NAME==VERSION`` that brings it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ebmcore.errors import UnknownComponentError
from ebmcore.registry import get_registry

#: The configuration sections that name a component, with the component's kind.
_SECTIONS: tuple[str, ...] = ("dataset", "model", "loss", "sampler", "energy")


def component_provenance(kind: str, name: str) -> dict[str, Any] | None:
    """Return :meth:`ebmcore.registry.Registry.provenance` of ``name``, or ``None`` when the
    active registry has no such component (the run that uses it reports that)."""
    try:
        return get_registry().provenance(kind, name)
    except UnknownComponentError:
        return None


def run_provenance(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return, for each component section of a run configuration (``dataset``, ``model``,
    ``loss``, ``sampler``, ``energy``) that names a known component, where it came from:
    ``{"model": {"kind", "name", "plugin", "distribution", "version", "builtin"}, ...}``."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    found = {}
    for section in _SECTIONS:
        block = config.get(section)
        name = block.get("name") if isinstance(block, Mapping) else None
        if isinstance(name, str) and name.strip():
            record = component_provenance(section, name)
            if record is not None:
                found[section] = record
    return found


def require_recorded(recorded: Mapping[str, Any] | None,
                     config: Mapping[str, Any] | None = None) -> None:
    """Check that every component a run recorded is available; otherwise raise
    :class:`~ebmcore.UnknownComponentError` naming its distribution, version and install
    command.

    Args:
        recorded: What :func:`run_provenance` returned when the run was made (``None`` or
            empty: nothing to check, as for runs written before provenance was recorded).
        config: The run's configuration; its section names are checked (they may be aliases
            of the recorded names), else the recorded names.
    """
    if not recorded:
        return
    registry = get_registry()
    for section, record in recorded.items():
        if not isinstance(record, Mapping):
            continue
        block = (config or {}).get(section)
        name = block.get("name") if isinstance(block, Mapping) else None
        registry.require(record.get("kind", section), name or record.get("name"), record)
