"""The descriptor a plugin returns for each component it contributes."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

#: The component kinds the core knows, in display order.
KINDS: tuple[str, ...] = ("energy", "sampler", "loss", "model", "dataset")

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")


def normalize_name(name: str) -> str:
    """Return the lookup key of a component or plugin name.

    Lookup is case-insensitive and treats ``-`` and ``_`` as the same character, so
    ``"Double-Well"`` and ``"double_well"`` name one component.
    """
    return name.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class Component:
    """One component offered by a plugin.

    Args:
        name: The name users look the component up by (letters, digits, ``-`` and ``_``).
        target: The class or factory itself, or a lazy ``"module:attr"`` string that the core
            imports on first use, so that listing components imports nothing heavy.
        summary: One line saying what the component is.
        aliases: Other names that resolve to this component.
        replaces: Set to ``True`` to take over a built-in component of the same name; without
            it, built-in names are reserved and a clashing third-party component is reachable
            only as ``plugin:name``.
    """

    name: str
    target: Any
    summary: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    replaces: bool = False

    def __post_init__(self) -> None:
        for label, value in [("name", self.name), *(("alias", a) for a in self.aliases)]:
            if not isinstance(value, str) or not _NAME_PATTERN.match(value):
                raise ValueError(
                    f"Component {label} must be a string of letters, digits, '-' or '_' "
                    f"starting with a letter, got {value!r}"
                )
        if isinstance(self.target, str) and ":" not in self.target:
            raise ValueError(
                f"Component {self.name!r}: a lazy target must read 'module:attr', "
                f"got {self.target!r}"
            )
        if not isinstance(self.target, str) and not callable(self.target):
            raise ValueError(
                f"Component {self.name!r}: target must be a class, a factory or a "
                f"'module:attr' string, got {type(self.target).__name__}"
            )
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def keys(self) -> tuple[str, ...]:
        """The normalised name followed by the normalised aliases."""
        return (normalize_name(self.name), *(normalize_name(a) for a in self.aliases))

    def resolve(self) -> Any:
        """Return the target object, importing it first when it is a ``"module:attr"`` string."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr_path = self.target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
        return obj
