"""Where a run's defaults come from: the recipes plugins declare on their components.

A recipe (:attr:`ebmcore.Component.recipe`) is a partial run configuration. This module
reads them from the active registry; :func:`ebmcore.config.defaults_for` combines them with
the core's settings. The core itself names no component here: which data set a run uses
when none is named is the one whose recipe declares ``"default": True``.

How recipes combine, lowest first (:func:`ebmcore.config.defaults_for`):

1. the core's :data:`ebmcore.config.RUN_SETTINGS`;
2. the data set's recipe (its base: model, loss, sampler and settings);
3. the run's loss's own recipe, when the run names another loss than the data set's and the
   recipe fits the run's model (:func:`loss_recipe_fits`);
4. the data set's tuning for that loss: a data set's recipe may hold
   ``"losses": {loss_name: partial_config}``; when the run's loss is ``loss_name`` (compared
   by canonical name, so an alias such as ``fm`` finds ``flow_matching``), that partial
   configuration is merged over the result (:func:`loss_tuning`). It was measured on this
   data set with this loss, so it wins over the loss's generic recipe; a ``model`` section
   naming another model than the one so far starts from its own parameters;
5. the user's ``--config`` file and ``--set`` items, which win over all.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ebmcore.component import normalize_name
from ebmcore.errors import AmbiguousComponentError, ConfigError, UnknownComponentError
from ebmcore.registry import get_registry

#: The recipe key that marks the default data set (not a configuration section).
DEFAULT_KEY = "default"
#: The data-set recipe key holding per-loss tuning, ``{loss_name: partial_config}`` (not a
#: configuration section; see :func:`loss_tuning`).
LOSSES_KEY = "losses"


def recipe_for(kind: str, name: str | None) -> dict[str, Any] | None:
    """Return a copy of the recipe ``name`` declares, without its ``default`` mark; ``None``
    for no name, an unknown name (the run reports it when it builds the component) or a
    component without a recipe."""
    if name is None:
        return None
    try:
        recipe = get_registry().recipe(kind, name)
    except UnknownComponentError:
        return None
    if recipe is not None:
        recipe.pop(DEFAULT_KEY, None)
    return recipe


def canonical_name(kind: str, name: str) -> str:
    """The name the plugin spells the component ``name`` of ``kind`` with (an alias gives its
    component's name), normalised; ``name`` normalised when no single component answers."""
    try:
        return normalize_name(get_registry().provenance(kind, name)["name"])
    except (UnknownComponentError, AmbiguousComponentError):
        return normalize_name(name)


def loss_tuning(dataset_recipe: Mapping[str, Any], loss: str | None) -> dict[str, Any] | None:
    """The partial configuration a data set's recipe declares for runs with ``loss``.

    ``dataset_recipe[LOSSES_KEY]`` maps loss names (or aliases) to partial configurations;
    names on both sides are compared by :func:`canonical_name`. Returns a copy, or ``None``
    when the recipe holds none for that loss (or ``loss`` is ``None``).

    The section's shape is checked when the component is declared
    (:class:`ebmcore.Component`).
    """
    tunings = dataset_recipe.get(LOSSES_KEY)
    if loss is None or not tunings:
        return None
    wanted = canonical_name("loss", loss)
    for name, partial in tunings.items():
        if canonical_name("loss", name) == wanted:
            return copy.deepcopy(dict(partial))
    return None


def default_dataset() -> str | None:
    """The data set a run uses when none is named: the one whose recipe declares
    ``"default": True``, a third-party plugin's before a built-in one; ``None`` when no
    plugin declares one (every built-in blocked, say).

    Raises:
        ConfigError: When two plugins of the same standing both declare a default.
    """
    registry = get_registry()
    marked = [name for name, recipe in registry.recipes("dataset").items()
              if recipe.get(DEFAULT_KEY)]
    third_party = [n for n in marked if not registry.provenance("dataset", n)["builtin"]]
    candidates = third_party or marked
    if len(candidates) > 1:
        raise ConfigError(f"several data sets declare a default recipe ({', '.join(candidates)}"
                          f"); name one with --dataset or [dataset] name")
    return candidates[0] if candidates else None


def loss_recipe_fits(recipe: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether a loss's recipe applies to a run.

    A recipe that names no model applies to any run. One that names an energy model was
    measured with that model, so it applies only where the run's model is that model. One
    that names a field model (a model whose target is an :class:`ebmcore.field.Field` subclass:
    the loss trains a vector field, not an energy) brings its model: it applies unless the
    run's model is already another field model, and its ``model`` section then replaces the
    run's.
    """
    wanted = (recipe.get("model") or {}).get("name")
    current = (config.get("model") or {}).get("name")
    if wanted is None or wanted == current:
        return True
    return is_field_model(wanted) and not is_field_model(current)


def is_field_model(name: str | None) -> bool:
    """Whether the model component ``name`` builds an :class:`ebmcore.field.Field` (its target is
    a ``Field`` subclass); ``False`` for no name or an unknown one. Resolving the target
    imports its module."""
    from ebmcore.field import Field

    if name is None:
        return False
    try:
        target = get_registry().get("model", name)
    except UnknownComponentError:
        return False
    return isinstance(target, type) and issubclass(target, Field)


def image_recipes() -> dict[str, dict[str, Any]]:
    """The recipes of the data sets that implement the image-data protocol
    (:class:`ebmcore.dataset.ImageDataset`), by name; resolving them imports their modules."""
    from ebmcore.dataset import ImageDataset

    registry = get_registry()
    found = {}
    for name, recipe in registry.recipes("dataset").items():
        target = registry.get("dataset", name)
        if isinstance(target, type) and issubclass(target, ImageDataset):
            found[name] = recipe
    return found
