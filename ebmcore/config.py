"""Run configuration: defaults, ``--set section.key=value`` overrides and TOML round trips.

A configuration is a plain nested dict. Component sections (``dataset``, ``model``, ``loss``,
``sampler``, ``energy``) hold ``name`` and ``params``; the other sections (``train``,
``evaluate``, ``sample``) hold settings directly. ``config.toml`` in a run folder is the fully
resolved configuration: replaying it with ``--config`` repeats the run.

The core holds only settings that name no component (:data:`RUN_SETTINGS`); which data set,
model, loss and sampler a run starts from comes from the recipes the plugins declare on their
components (:attr:`ebmcore.Component.recipe`), read here through the registry
(:func:`defaults_for`).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ebmcore.component import normalize_name
from ebmcore.errors import ConfigError
from ebmcore.recipes import (
    DEFAULT_KEY,
    LOSSES_KEY,
    default_dataset,
    image_recipes,
    loss_recipe_fits,
    loss_tuning,
    recipe_for,
)
from ebmcore.registry import get_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Sections naming a registry component: ``{"name": ..., "params": {...}}``.
COMPONENT_SECTIONS: tuple[str, ...] = ("dataset", "model", "loss", "sampler", "energy")
#: Sections holding settings directly.
SETTING_SECTIONS: tuple[str, ...] = ("train", "evaluate", "sample")

#: The settings every run starts from. They name no component: the data set, model, loss
#: and sampler come from recipes that plugins declare (:attr:`ebmcore.Component.recipe`).
RUN_SETTINGS: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "train": {"steps": 2000, "batch_size": 256, "lr": 3e-3, "log_every": 50,
              "checkpoint_every": 500},
    "evaluate": {"n_test": 20000, "resolution": 256},
    # chains start uniformly over the evaluation box; burn-in lets those in the model's flat
    # tails drift into the modes before anything is kept
    "sample": {"n_chains": 2000, "n_steps": 500, "burn_in": 1500, "thin": 5, "backend": "auto",
               "trace_chains": 1000},
}

#: AIS chains and temperatures ``ebmcore evaluate`` uses on a 2-D model unless told; 200
#: temperatures left the reverse estimate of the demo's model a nat below the grid's log Z.
AIS_CHAINS, AIS_TEMPS = 500, 1000

#: Names that moved out of the core, with what replaces them (see :func:`__getattr__`).
_MOVED = {
    "TRAIN_DEFAULTS": "defaults_for(None)",
    "LOSS_RECIPES": "the losses' recipes (ebmcore.registry.recipe('loss', name))",
    "IMAGE_RECIPE": "the image data sets' recipes (ebmcore.registry.recipe('dataset', name))",
    "IMAGE_DATASETS": "the image data sets' recipes (ebmcore.registry.recipe('dataset', name))",
}


def __getattr__(name: str) -> Any:
    """Deprecated names, read from the registry's recipes for one more release."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    warnings.warn(f"ebmcore.config.{name} is deprecated: recipes now come from the plugins "
                  f"that own the components; use {_MOVED[name]}", DeprecationWarning,
                  stacklevel=2)
    if name == "TRAIN_DEFAULTS":
        return defaults_for(None)
    if name == "LOSS_RECIPES":
        return get_registry().recipes("loss")
    images = image_recipes()
    if name == "IMAGE_DATASETS":
        return images
    first = next(iter(images.values()), {})
    return {k: v for k, v in first.items() if k not in ("dataset", DEFAULT_KEY, LOSSES_KEY)}


def defaults_for(dataset: str | None, loss: str | None = None) -> dict[str, Any]:
    """The defaults a run on ``dataset`` with ``loss`` starts from.

    :data:`RUN_SETTINGS`, then the data set's recipe (a data set without one, or no data set,
    takes the default data set's recipe: :func:`ebmcore.recipes.default_dataset`), then,
    when ``loss`` is named and differs from the recipe's, that loss with its own recipe
    where the recipe fits the run's model (:func:`ebmcore.recipes.loss_recipe_fits`), then
    the data set's own tuning for the run's loss (its recipe's ``"losses"`` section:
    :func:`ebmcore.recipes.loss_tuning`), which wins over the loss's generic recipe.
    Recipes are read from the registry (:attr:`ebmcore.Component.recipe`).
    """
    key = normalize_name(dataset) if isinstance(dataset, str) else None
    loss_key = normalize_name(loss) if isinstance(loss, str) else None
    recipe = recipe_for("dataset", key)
    if recipe is None:
        fallback = default_dataset()
        recipe = recipe_for("dataset", fallback) or {}
        key = key or fallback
    base = {k: v for k, v in recipe.items() if k != LOSSES_KEY}
    config = merge(RUN_SETTINGS, base)
    if key is not None:
        config["dataset"] = {"name": key,
                             "params": dict((recipe.get("dataset") or {}).get("params", {}))}
    if loss_key is not None and loss_key != (config.get("loss") or {}).get("name"):
        config["loss"] = {"name": loss_key, "params": {}}
        loss_recipe = recipe_for("loss", loss_key)
        if loss_recipe and loss_recipe_fits(loss_recipe, config):
            # a component the recipe names instead of the run's starts from its own
            # parameters (a field model brought by its loss takes none of the energy's)
            config = merge_run(config, loss_recipe)
    tuning = loss_tuning(recipe, (config.get("loss") or {}).get("name"))
    if tuning:
        config = merge_run(config, tuning)
    return config


def complete_run(given: Mapping[str, Any], dataset: str | None = None,
                 loss: str | None = None) -> dict[str, Any]:
    """Return the run configuration ``given`` (a ``--config`` file, a saved config.toml)
    completed from the defaults of its data set and loss, or of ``dataset`` and ``loss``
    where they are named (on the command line): :func:`merge_run` over
    :func:`defaults_for`."""
    dataset = dataset or (given.get("dataset") or {}).get("name")
    loss = loss or (given.get("loss") or {}).get("name")
    return merge_run(defaults_for(dataset, loss), given)


def parse_value(text: str) -> Any:
    """Read a ``--set`` value as TOML (``0.1``, ``[64, 64]``, ``true``, ``"s"``), else a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with each ``section.key=value`` item applied.

    In a component section the key names a parameter (``sampler.step_size=0.01``), except
    ``name``, which picks the component. ``seed=1`` and ``device=cuda`` set top-level keys.
    """
    result = copy.deepcopy(config)
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        value = parse_value(raw.strip())
        section, dot, field = key.partition(".")
        if not dot:
            if section not in ("seed", "device"):
                raise ConfigError(
                    f"--set {item!r}: expected section.key=value with a section among "
                    f"{', '.join(COMPONENT_SECTIONS + SETTING_SECTIONS)}, or seed=/device="
                )
            result[section] = value
            continue
        if not field or "." in field:
            raise ConfigError(f"--set {item!r}: expected exactly one '.' in the key")
        if section in COMPONENT_SECTIONS:
            block = result.setdefault(section, {"name": None, "params": {}})
            if field == "name":
                block["name"] = value
            else:
                block.setdefault("params", {})[field] = value
        elif section in SETTING_SECTIONS:
            result.setdefault(section, {})[field] = value
        else:
            raise ConfigError(
                f"--set {item!r}: unknown section {section!r}; expected one of "
                f"{', '.join(COMPONENT_SECTIONS + SETTING_SECTIONS)}"
            )
    return result


def merge_run(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Return the run configuration ``given`` completed from ``defaults``.

    Like :func:`merge`, except that a component section of ``given`` naming another
    component than ``defaults`` does starts from that component's own defaults: the old
    component's parameters would not fit it.
    """
    base = copy.deepcopy(dict(defaults))
    for section in COMPONENT_SECTIONS:
        _restart_renamed(base, given, section)
    # the sampler that writes the samples (sample.sampler) is a component too
    given_sample = given.get("sample") or {}
    if isinstance(given_sample, Mapping) and isinstance(given_sample.get("sampler"), Mapping):
        base["sample"] = dict(base.get("sample") or {})
        _restart_renamed(base["sample"], given_sample, "sampler")
    return merge(base, given)


def _restart_renamed(base: dict[str, Any], given: Mapping[str, Any], key: str) -> None:
    """Start ``base[key]`` afresh from its component's defaults when ``given[key]`` names
    another component than ``base[key]`` (a block or a bare name) does."""
    block = given.get(key)
    name = block.get("name") if isinstance(block, Mapping) else None
    old = base.get(key)
    if name is not None and name != (old.get("name") if isinstance(old, Mapping) else old):
        base[key] = {"name": name, "params": {}}


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively with ``override``."""
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a configuration file, raising ConfigError with the path when it is unreadable."""
    target = Path(path)
    try:
        return tomllib.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(target)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {str(target)!r} is not valid TOML: {exc}") from None


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise ConfigError(f"{where} = {value!r} cannot be written to TOML")


def dump_toml(config: Mapping[str, Any]) -> str:
    """Write a nested dict of TOML-representable values (``None`` entries are left out)."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items()
                   if v is not None and not isinstance(v, Mapping)}
        tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {_toml_value(value, f'{prefix}.{key}'.strip('.'))}")
        for key, value in tables.items():
            emit(value, f"{prefix}.{key}" if prefix else key)

    emit(config, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def signature_parameter(target: Any, name: str) -> inspect.Parameter | None:
    """Return the parameter ``name`` of the callable ``target``'s signature, or ``None`` when
    it has no such parameter or no signature that can be read."""
    try:
        return inspect.signature(target).parameters.get(name)
    except (TypeError, ValueError):
        return None


def resolved_params(target: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``params`` plus every default of ``target``'s signature that TOML can hold."""
    result: dict[str, Any] = {}
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return dict(params)
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty:
            continue
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        try:
            _toml_value(default, p.name)
        except ConfigError:
            continue
        result[p.name] = default
    result.update(params)
    return result


#: Trainer arguments the ``[train]`` section may not set: the run supplies them itself (the
#: seed comes from the top-level ``seed``).
_TRAINER_SUPPLIED = ("model", "loss", "optimizer", "data", "callbacks", "progress",
                     "checkpoint_dir", "seed")

#: Sizes in the ``[evaluate]`` and ``[sample]`` sections, with their least allowed value.
_SIZES: dict[str, dict[str, int]] = {
    "train": {"picture_every": 1},
    "evaluate": {"n_test": 10, "resolution": 2, "ais_chains": 2, "ais_temps": 2,
                 "likelihood_points": 2},
    "sample": {"n_chains": 1, "n_steps": 1, "burn_in": 0, "thin": 1, "trace_chains": 1},
}


def _unknown(where: str, key: str, known: Iterable[str]) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown key {where}.{key}{hint} (accepted: {', '.join(known)})")


def check_train_config(config: Mapping[str, Any]) -> None:
    """Check a training configuration's keys and settings before anything is built.

    Unknown top-level keys or sections, unknown keys in ``[train]``, ``[evaluate]`` and
    ``[sample]`` (with a "did you mean"), non-integer or too small sizes and a malformed
    evaluation box raise :class:`ConfigError` naming the key. Component parameters are
    checked by the components themselves when they are created.
    """
    from ebmcore.train import Trainer

    sections = {"seed", "device", "dataset", "model", "loss", "sampler", *SETTING_SECTIONS}
    for key in config:
        if key not in sections:
            raise _unknown("config", key, sections)
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    trainer_keys = [name for name in inspect.signature(Trainer).parameters
                    if name not in _TRAINER_SUPPLIED]
    allowed = {"train": [*trainer_keys, "picture_every"],
               "evaluate": ["n_test", "bounds", "resolution", "ais_chains", "ais_temps",
                            "integrator", "likelihood_points"],
               "sample": [*RUN_SETTINGS["sample"], "sampler"]}
    for section, keys in allowed.items():
        block = config.get(section, {})
        if not isinstance(block, Mapping):
            raise ConfigError(f"[{section}] must be a table of settings, got {block!r}")
        for key in block:
            if key not in keys:
                raise _unknown(section, key, keys)
        for key, minimum in _SIZES.get(section, {}).items():
            value = block.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < minimum):
                raise ConfigError(f"{section}.{key} must be an integer of at least {minimum}, "
                                  f"got {value!r}")
    sample_sampler(config.get("sample", {}))
    bounds = config.get("evaluate", {}).get("bounds")
    if bounds is not None:
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ConfigError(f"evaluate.bounds must be [low, high], got {bounds!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"evaluate.bounds must be finite with low < high, got {bounds!r}")


def sample_sampler(section: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sampler a training run writes its samples with (``sample.sampler``), as a
    component block ``{"name": ..., "params": {...}}``; ``None`` when ``section`` names none,
    and the run's own ``[sampler]`` (the one training used) writes them. A bare name stands
    for the sampler with its own defaults.

    Args:
        section: The run's ``[sample]`` section.

    Raises:
        ConfigError: When ``sample.sampler`` is neither a name nor a table of ``name`` and
            ``params``, or names no registered sampler (with a "did you mean").
    """
    block = section.get("sampler")
    if block is None:
        return None
    if isinstance(block, str):
        block = {"name": block}
    if not isinstance(block, Mapping):
        raise ConfigError(f"sample.sampler must be a sampler name or a table with name and "
                          f"params, e.g. {{name = \"parallel_tempering\", params = {{...}}}}, "
                          f"got {block!r}")
    for key in block:
        if key not in ("name", "params"):
            raise _unknown("sample.sampler", key, ("name", "params"))
    name, params = block.get("name"), block.get("params", {})
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"sample.sampler.name must name a sampler, got {name!r}")
    if not isinstance(params, Mapping):
        raise ConfigError(f"sample.sampler.params must be a table of the sampler's "
                          f"parameters, got {params!r}")
    try:
        get_registry().component("sampler", name)
    except LookupError as exc:
        raise ConfigError(f"sample.sampler: {exc}") from None
    return {"name": name, "params": dict(params)}
