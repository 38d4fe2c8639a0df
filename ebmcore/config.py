"""Run configuration: defaults, ``--set section.key=value`` overrides and TOML round trips.

A configuration is a plain nested dict. Component sections (``dataset``, ``model``, ``loss``,
``sampler``, ``energy``) hold ``name`` and ``params``; the other sections (``train``,
``evaluate``, ``sample``) hold settings directly. ``config.toml`` in a run folder is the fully
resolved configuration: replaying it with ``--config`` repeats the run.
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

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Sections naming a registry component: ``{"name": ..., "params": {...}}``.
COMPONENT_SECTIONS: tuple[str, ...] = ("dataset", "model", "loss", "sampler", "energy")
#: Sections holding settings directly.
SETTING_SECTIONS: tuple[str, ...] = ("train", "evaluate", "sample")

#: The built-in defaults of ``ebmcore train`` (and so of ``ebmcore demo``).
TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "dataset": {"name": "eight_gaussians", "params": {}},
    "model": {"name": "mlp", "params": {}},
    "loss": {"name": "pcd", "params": {}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.01}},
    "train": {"steps": 2000, "batch_size": 256, "lr": 3e-3, "log_every": 50,
              "checkpoint_every": 500},
    "evaluate": {"n_test": 20000, "bounds": [-5.0, 5.0], "resolution": 256},
    # chains start uniformly over the evaluation box; burn-in lets those in the model's flat
    # tails drift into the modes before anything is kept
    "sample": {"n_chains": 2000, "n_steps": 500, "burn_in": 1500, "thin": 5, "backend": "auto",
               "trace_chains": 1000},
}


#: Where each image data set's recipe starts: ``ebmcore train --dataset digits`` (or a
#: ``--config`` naming it) begins from :func:`defaults_for` instead of the 2-D defaults. A
#: ``conv`` energy correcting the data's Gaussian (``confine="gaussian"``), persistent
#: contrastive divergence whose chains restart from that Gaussian, and Langevin steps
#: preconditioned by its covariance (docs/training-results.md measures the recipe).
IMAGE_RECIPE: dict[str, Any] = {
    "model": {"name": "conv", "params": {"channels": [32, 64], "confine": "gaussian"}},
    "loss": {"name": "pcd", "params": {"k": 20, "init": "base", "alpha": 0.1}},
    "sampler": {"name": "langevin", "params": {"step_size": 0.2, "precondition": True}},
    "train": {"steps": 1500, "batch_size": 128, "lr": 1e-3, "log_every": 50,
              "checkpoint_every": 500, "picture_every": 250},
    "evaluate": {"ais_chains": 200, "ais_temps": 500},
    "sample": {"n_chains": 500, "n_steps": 300, "burn_in": 0, "thin": 5, "backend": "auto",
               "trace_chains": 64},
}

#: The image data sets and what their recipe changes from :data:`IMAGE_RECIPE`.
IMAGE_DATASETS: dict[str, dict[str, Any]] = {
    "digits": {},
    "mnist": {"model": {"params": {"channels": [32, 64, 128]}}},
    "fashion_mnist": {"model": {"params": {"channels": [32, 64, 128]}}},
}


#: AIS chains and temperatures ``ebmcore evaluate`` uses on a 2-D model unless told; 200
#: temperatures left the reverse estimate of the demo's model a nat below the grid's log Z.
AIS_CHAINS, AIS_TEMPS = 500, 1000

#: What a loss changes in the 2-D defaults when a run names it (``--loss`` or a
#: ``--config``). Exact and sliced score matching fix a density only up to the relative
#: weights of regions the data separates; the mlp's default four layers shape those regions
#: independently and the weights go astray (a gap of 6,785 nats on ``checkerboard``), while
#: two layers' smoothness ties them together. Clipping the gradient norm at 1 helps sliced
#: score matching on all three 2-D data sets (docs/training-results.md).
LOSS_RECIPES: dict[str, dict[str, Any]] = {
    "score_matching": {"model": {"name": "mlp", "params": {"hidden": [128, 128]}}},
    "sliced_score_matching": {"model": {"name": "mlp", "params": {"hidden": [128, 128]}},
                              "train": {"grad_clip": 1.0}},
}


def defaults_for(dataset: str | None, loss: str | None = None) -> dict[str, Any]:
    """The defaults a run on ``dataset`` with ``loss`` starts from: :data:`TRAIN_DEFAULTS`
    with the loss's recipe (:data:`LOSS_RECIPES`) and the loss named, or for an image data set
    (``digits``, ``mnist``, ``fashion_mnist``) its image recipe with the loss named."""
    from ebmcore.component import normalize_name

    key = normalize_name(dataset) if isinstance(dataset, str) else None
    loss_key = normalize_name(loss) if isinstance(loss, str) else None
    image = key in IMAGE_DATASETS
    if image:
        recipe = merge(IMAGE_RECIPE, IMAGE_DATASETS[key])
        recipe["dataset"] = {"name": key, "params": {}}
        base = {k: v for k, v in TRAIN_DEFAULTS.items() if k not in ("model", "loss", "sampler")}
        config = merge(base, recipe)
    else:
        config = copy.deepcopy(TRAIN_DEFAULTS)
    if loss_key is not None and loss_key != config["loss"]["name"]:
        config["loss"] = {"name": loss_key, "params": {}}
        if not image:  # the loss recipes are for the 2-D defaults' mlp
            config = merge(config, LOSS_RECIPES.get(loss_key, {}))
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


class ConfigError(ValueError):
    """A configuration value, file or ``--set`` item is malformed."""


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
        block = given.get(section)
        name = block.get("name") if isinstance(block, Mapping) else None
        if name is not None and name != (base.get(section) or {}).get("name"):
            base[section] = {"name": name, "params": {}}
    return merge(base, given)


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
    "evaluate": {"n_test": 10, "resolution": 2, "ais_chains": 2, "ais_temps": 2},
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
               "evaluate": ["n_test", "bounds", "resolution", "ais_chains", "ais_temps"],
               "sample": [*TRAIN_DEFAULTS["sample"]]}
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
    bounds = config.get("evaluate", {}).get("bounds")
    if bounds is not None:
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ConfigError(f"evaluate.bounds must be [low, high], got {bounds!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"evaluate.bounds must be finite with low < high, got {bounds!r}")
