"""The descriptor a plugin returns for each component it contributes."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: The component kinds the core knows, in display order.
KINDS: tuple[str, ...] = ("energy", "sampler", "loss", "model", "dataset", "backend",
                          "interpolant", "coupling", "integrator")

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")

#: What :attr:`Component.data_shape` may say: the model's constructor keyword that receives
#: the data's shape (``dim``: the flat size as an int; ``event_shape``: the shape tuple).
DATA_SHAPES: tuple[str, ...] = ("dim", "event_shape")

#: The keys a :attr:`Component.recipe` may hold: run-configuration sections (see
#: :mod:`ebmcore.config`), the top-level ``seed`` and ``device``, and ``default`` (a data
#: set's recipe only: ``True`` makes it the run a command starts from when no data set is
#: named) and ``losses`` (a data set's per-loss tuning, ``{loss_name: partial recipe}``, see
#: :mod:`ebmcore.recipes`).
RECIPE_KEYS: tuple[str, ...] = ("dataset", "model", "loss", "sampler", "energy", "train",
                                "evaluate", "sample", "seed", "device", "default", "losses")


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
        data_shape: For models: which constructor keyword receives the data's shape when a
            run builds the model for a data set, ``"dim"`` (the flat size, an int) or
            ``"event_shape"`` (the shape tuple); ``None`` passes neither.
        takes_sampler: For losses: whether the constructor takes ``sampler=`` (an instance or
            a name), which a run then fills with its configured sampler.
        recipe: Run defaults this component brings, a partial run configuration (sections
            as in :mod:`ebmcore.config`). A data set's recipe says how to train on it
            (model, loss, sampler, ``train``/``evaluate``/``sample`` settings); a loss's
            recipe holds what changes when a run uses that loss, and applies only where the
            run's model is the one it names (if it names one). Read through
            :func:`ebmcore.config.defaults_for`.
    """

    name: str
    target: Any
    summary: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    replaces: bool = False
    data_shape: Literal["dim", "event_shape"] | None = None
    takes_sampler: bool = False
    recipe: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)

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
        if self.data_shape is not None and self.data_shape not in DATA_SHAPES:
            raise ValueError(f"Component {self.name!r}: data_shape must be None or one of "
                             f"{', '.join(map(repr, DATA_SHAPES))}, got {self.data_shape!r}")
        if not isinstance(self.takes_sampler, bool):
            raise ValueError(f"Component {self.name!r}: takes_sampler must be True or False, "
                             f"got {self.takes_sampler!r}")
        if self.recipe is not None:
            object.__setattr__(self, "recipe", _check_recipe(self.name, self.recipe))

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


def _check_recipe(name: str, recipe: Any) -> Mapping[str, Any]:
    """Return ``recipe`` as a read-only mapping after checking its keys and sections."""
    if not isinstance(recipe, Mapping):
        raise ValueError(f"Component {name!r}: recipe must be a mapping of run-configuration "
                         f"sections, got {type(recipe).__name__}")
    for key, value in recipe.items():
        if key not in RECIPE_KEYS:
            raise ValueError(f"Component {name!r}: recipe key {key!r} is not one of "
                             f"{', '.join(RECIPE_KEYS)}")
        if key not in ("seed", "device", "default") and not isinstance(value, Mapping):
            raise ValueError(f"Component {name!r}: recipe section {key!r} must be a mapping, "
                             f"got {type(value).__name__}")
    if not isinstance(recipe.get("default", False), bool):
        raise ValueError(f"Component {name!r}: recipe['default'] must be True or False")
    for loss, partial in (recipe.get("losses") or {}).items():
        if not isinstance(loss, str) or not isinstance(partial, Mapping):
            raise ValueError(f"Component {name!r}: recipe['losses'] must map loss names to "
                             f"partial recipes, got {loss!r}: {partial!r}")
        if {"default", "losses"} & set(partial):
            raise ValueError(f"Component {name!r}: recipe['losses'][{loss!r}] may not hold "
                             f"'default' or 'losses'")
        _check_recipe(name, partial)
    return MappingProxyType(dict(recipe))
