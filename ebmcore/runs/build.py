"""Building a run's components from its configuration.

The configuration names each component and its parameters (see :mod:`ebmcore.config`);
what the components need from each other travels through the declared fields of their
:class:`~ebmcore.component.Component` descriptors, never through probed parameter names: a
model whose descriptor declares :attr:`~ebmcore.component.Component.data_shape` receives the
data set's shape, and a loss that declares
:attr:`~ebmcore.component.Component.takes_sampler` receives the run's sampler.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

import ebmcore
from ebmcore.component import Component
from ebmcore.config import check_train_config, resolved_params
from ebmcore.dataset import Dataset, ImageDataset
from ebmcore.field import check_sampler_fits
from ebmcore.registry import get_registry


def component_block(kind: str, block: Any) -> dict[str, Any]:
    """Return a copy of a component section ``{"name": ..., "params": {...}}`` of kind
    ``kind``, after checking its shape.

    Raises:
        ValueError: When the section names no component or its ``params`` is not a table.
    """
    if not isinstance(block, dict) or not block.get("name"):
        raise ValueError(f"the [{kind}] section needs a component name")
    params = block.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"[{kind}.params] must be a table of parameters")
    return {"name": block["name"], "params": dict(params)}


def descriptor(kind: str, name: str) -> Component:
    """The :class:`~ebmcore.component.Component` a registry lookup of ``name`` finds."""
    return get_registry().component(kind, name)[0]


def build_training(config: dict[str, Any]) -> dict[str, Any]:
    """Create the data set, model, sampler and loss a configuration names.

    Args:
        config: A run configuration such as :data:`ebmcore.config.TRAIN_DEFAULTS`.

    Returns:
        A dict with the objects (``dataset``, ``model``, ``sampler``, ``loss``), the
        ``device`` and ``config``: the input with every component's parameters completed by
        its signature's defaults (the fully resolved configuration).

    Raises:
        ConfigError: When a key or setting of ``config`` is malformed.
        ValueError: When ``device`` names a CUDA device torch cannot see.
    """
    from ebmcore.runs.sampling import writing_sampler  # (sampling imports this module)

    check_train_config(config)
    resolved = dict(config)
    device = torch.device(config.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")

    dataset_cfg = component_block("dataset", config["dataset"])
    dataset = ebmcore.create("dataset", dataset_cfg["name"], **dataset_cfg["params"])

    model_cfg = component_block("model", config["model"])
    model_cfg["params"] = {**shape_params(descriptor("model", model_cfg["name"]), dataset),
                           **model_cfg["params"]}
    model = ebmcore.create("model", model_cfg["name"], **model_cfg["params"]).to(device)

    sampler_cfg = component_block("sampler", config["sampler"])
    sampler = ebmcore.create("sampler", sampler_cfg["name"], **sampler_cfg["params"])
    check_sampler_fits(model, sampler, sampler_cfg["name"])  # before any training
    writing_sampler(model, sampler, config.get("sample", {}))  # sample.sampler, checked too

    loss_cfg = component_block("loss", config["loss"])
    loss_params = dict(loss_cfg["params"])
    if descriptor("loss", loss_cfg["name"]).takes_sampler:
        loss_params["sampler"] = sampler
    loss = ebmcore.create("loss", loss_cfg["name"], **loss_params)

    for kind, block in (("dataset", dataset_cfg), ("model", model_cfg),
                        ("sampler", sampler_cfg), ("loss", loss_cfg)):
        resolved[kind] = {"name": block["name"],
                          "params": resolved_params(ebmcore.get(kind, block["name"]),
                                                    block["params"])}
    return {"dataset": dataset, "model": model, "sampler": sampler, "loss": loss,
            "device": device, "config": resolved}


def shape_params(model: Component, dataset: Dataset) -> dict[str, Any]:
    """The keyword a model's descriptor asks the data's shape under
    (:attr:`~ebmcore.component.Component.data_shape`): ``{"dim": flat size}``,
    ``{"event_shape": [sizes]}`` (a list, as the run's config.toml holds it), or nothing."""
    event = [int(s) for s in dataset.event_shape]
    if model.data_shape == "dim":
        return {"dim": math.prod(event)}
    if model.data_shape == "event_shape":
        return {"event_shape": event}
    return {}


def uses_sampler(config: dict[str, Any]) -> bool:
    """Whether the run's loss draws its negatives with the run's sampler (its descriptor
    declares :attr:`~ebmcore.component.Component.takes_sampler`)."""
    return descriptor("loss", component_block("loss", config["loss"])["name"]).takes_sampler


def is_image_dataset(dataset: Dataset) -> bool:
    """Whether ``dataset`` follows the image-data protocol
    (:class:`ebmcore.dataset.ImageDataset`: labelled images with a held-out split)."""
    return isinstance(dataset, ImageDataset)


def evaluation_work(energy: Any, rows: int) -> int:
    """The size of one batched evaluation of ``energy`` over ``rows`` points, in
    multiply-adds: its parameter and buffer elements (at least one per coordinate) per row.

    The same measure as the trainer's (rows times parameters), handed to
    :func:`ebmcore.threads.fit_threads` to decide whether threads pay.
    """
    size = sum(t.numel() for t in (*energy.parameters(), *energy.buffers()))
    event = energy.event_shape
    return int(rows) * max(size, math.prod(event) if event is not None else 1)


def load_energy(spec: dict[str, Any] | None, checkpoint: str | Path | None,
                device: torch.device) -> Any:
    """Build the energy to sample: a registry component from ``spec`` or a saved model.

    Args:
        spec: ``{"name": ..., "params": {...}}`` of an energy component.
        checkpoint: A ``model.pt`` written by a training run.
        device: Where the energy goes.

    Raises:
        ValueError: Unless exactly one of ``spec`` and ``checkpoint`` is given.
    """
    if (spec is None) == (checkpoint is None):
        raise ValueError("give exactly one of spec (an energy component) or checkpoint")
    if checkpoint is not None:
        from ebmcore.checkpoint import build_model

        energy = build_model(checkpoint)
        energy.eval()
    else:
        block = component_block("energy", spec)
        energy = ebmcore.create("energy", block["name"], **block["params"])
    return energy.to(device)
