"""Safe, atomic checkpoints: plain data and tensors in, the same out, never arbitrary pickles.

A checkpoint file is a ``torch.save`` of ``{"format": FORMAT, "version": VERSION, "meta":
..., "payload": ...}``. Writing goes to a temporary file in the target's directory, which is
flushed, fsynced and moved over the target with :func:`os.replace`, so a crash leaves either
the old file or the new one, never half of one. Reading uses ``torch.load(weights_only=True)``,
which refuses to rebuild arbitrary objects; the payload is therefore limited to tensors,
numbers, strings, ``None`` and lists, tuples and dicts of those (model and optimizer
``state_dict``\\ s and torch RNG states all qualify). Every unreadable file raises
:class:`~ebmcore.CheckpointError` with a one-line message naming the path.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ebmcore
from ebmcore.errors import CheckpointError

#: The marker that identifies an ebmcore checkpoint.
FORMAT = "ebmcore-checkpoint"
#: The newest format version this module writes and reads.
VERSION = 1

PathLike = str | os.PathLike[str]
_SCALARS = (bool, int, float, str, type(None))
_RESERVED_META = ("ebmcore_version", "torch_version")


def _check_data(value: Any, where: str) -> None:
    """Raise a TypeError naming ``where`` when ``value`` holds anything weights_only refuses.

    Types are matched exactly: subclasses (``torch.__version__`` is a ``str`` subclass,
    named tuples, enums) would be written fine but refused on load.
    """
    kind = type(value)
    if kind in _SCALARS or kind in (torch.Tensor, nn.Parameter):
        return
    if kind in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                f"checkpoint dict keys must be str or int")
            _check_data(item, f"{where}[{key!r}]")
        return
    if kind in (list, tuple):
        for i, item in enumerate(value):
            _check_data(item, f"{where}[{i}]")
        return
    raise TypeError(f"{where} has type {kind.__name__}; checkpoints hold only tensors, "
                    f"numbers, strings, None, and lists, tuples and dicts of those")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable where the platform allows opening a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(target: Path) -> tuple[int, str]:
    """Create a unique temporary file beside ``target``.

    ``os.open`` with mode 0o666 lets the umask decide the permissions, as a plain
    ``torch.save`` would (``tempfile.mkstemp`` would leave the checkpoint private, 0o600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {str(target)!r}")


def save_checkpoint(path: PathLike, payload: dict[str, Any], *,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write ``payload`` (and ``meta``) to ``path`` atomically and return the path.

    Args:
        path: Where to write; missing parent directories are created.
        payload: The data to store: tensors, numbers, strings, ``None`` and lists, tuples and
            dicts of those (``state_dict``\\ s and RNG states qualify).
        meta: Optional small descriptive data (same types), read back by
            :func:`load_checkpoint_with_meta`; ``ebmcore_version`` and ``torch_version`` are
            added automatically.

    Raises:
        TypeError: When ``payload`` or ``meta`` holds a type that cannot be loaded safely.
        ValueError: When ``meta`` uses a reserved key.
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    _check_data(payload, "payload")
    if meta is not None:
        if not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
        _check_data(meta, "meta")
        clash = sorted(set(meta) & set(_RESERVED_META))
        if clash:
            raise ValueError(f"meta keys {clash} are reserved; they are filled in automatically")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "meta": {**(meta or {}), "ebmcore_version": ebmcore.__version__,
                 "torch_version": str(torch.__version__)},
        "payload": payload,
    }
    fd, tmp_name = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(target.parent)
    return target


def _first_line(exc: BaseException) -> str:
    """Condense a (often multi-line, ANSI-coloured) torch error to one telling sentence."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:  # weights_only refusals bury the reason after generic advice
        text = text.split(marker, 1)[1]
    text = " ".join(text.split())
    text = re.split(r"\. | Check the documentation", text, maxsplit=1)[0].rstrip(".")
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_checkpoint_with_meta(path: PathLike, *,
                              map_location: Any = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint and return ``(payload, meta)``.

    Args:
        path: The checkpoint file.
        map_location: Where tensors land, as for ``torch.load`` (CPU by default).

    Raises:
        CheckpointError: When the file is missing, truncated, corrupt, of a newer format or
            not an ebmcore checkpoint.
    """
    target = Path(path)
    if not target.is_file():
        reason = "is a directory" if target.is_dir() else "does not exist"
        raise CheckpointError(f"Checkpoint {str(target)!r} {reason}")
    try:
        document = torch.load(target, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or unsafe files
        raise CheckpointError(
            f"Checkpoint {str(target)!r} cannot be read safely (truncated, corrupt or holding "
            f"non-data objects): {_first_line(exc)}"
        ) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(target)!r} is not an ebmcore checkpoint (no {FORMAT!r} marker); write "
            f"checkpoints with ebmcore.checkpoint.save_checkpoint"
        )
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise CheckpointError(
            f"Checkpoint {str(target)!r} has format version {version!r}; this ebmcore reads "
            f"versions 1 to {VERSION} (a newer ebmcore may have written it)"
        )
    payload, meta = document.get("payload"), document.get("meta")
    if not isinstance(payload, dict) or not isinstance(meta, dict):
        raise CheckpointError(f"Checkpoint {str(target)!r} is damaged: payload or meta is not "
                              f"a dict")
    return payload, meta


def load_checkpoint(path: PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and return its payload.

    Args:
        path: The checkpoint file.
        map_location: Where tensors land, as for ``torch.load`` (CPU by default).

    Raises:
        CheckpointError: When the file is missing, truncated, corrupt, of a newer format or
            not an ebmcore checkpoint.
    """
    return load_checkpoint_with_meta(path, map_location=map_location)[0]


def _unwrap(model: nn.Module) -> nn.Module:
    """Return the module inside a ``torch.compile`` wrapper, so state keys carry no prefix."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return getattr(model, "_orig_mod", model)


def _check_spec(spec: Any) -> dict[str, Any]:
    from ebmcore.registry import normalize_kind

    if not isinstance(spec, dict) or set(spec) - {"kind", "name", "params"} \
            or not {"kind", "name"} <= set(spec):
        raise ValueError(f"spec must be a dict with keys 'kind', 'name' and optionally "
                         f"'params', got {spec!r}")
    normalize_kind(spec["kind"])
    if not isinstance(spec["name"], str) or not spec["name"].strip():
        raise ValueError(f"spec['name'] must be a non-empty string, got {spec['name']!r}")
    params = spec.get("params", {})
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ValueError(f"spec['params'] must be a dict of keyword arguments, got {params!r}")
    return {"kind": spec["kind"], "name": spec["name"], "params": params}


def save_model(path: PathLike, model: nn.Module, *, spec: dict[str, Any] | None = None,
               meta: dict[str, Any] | None = None) -> Path:
    """Save a model's ``state_dict`` (and how to rebuild it) as a checkpoint.

    Args:
        path: Where to write.
        model: The module to save; a ``torch.compile`` wrapper is unwrapped first.
        spec: ``{"kind": ..., "name": ..., "params": {...}}``, the registry call that builds
            the model, so :func:`build_model` can recreate it without code.
        meta: Optional descriptive data stored next to the weights.
    """
    from ebmcore.provenance import component_provenance

    module = _unwrap(model)
    payload = {
        "state_dict": module.state_dict(),
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "spec": None if spec is None else _check_spec(spec),
    }
    if spec is not None and meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    if spec is not None and "provenance" not in (meta or {}):
        record = component_provenance(spec["kind"], spec["name"])
        if record is not None:  # where the model came from, for the error if it goes missing
            meta = {**(meta or {}), "provenance": {"model": record}}
    return save_checkpoint(path, payload, meta=meta)


def _model_payload(path: PathLike, map_location: Any) -> dict[str, Any]:
    payload = load_checkpoint(path, map_location=map_location)
    _require_state_dict(payload, path)
    return payload


def _require_state_dict(payload: Any, path: PathLike) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"Checkpoint {str(path)!r} holds no model state_dict; write it "
                              f"with ebmcore.checkpoint.save_model")


def _load_into(module: nn.Module, payload: dict[str, Any], path: PathLike,
               strict: bool) -> None:
    try:
        module.load_state_dict(payload["state_dict"], strict=strict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(
            f"Checkpoint {str(path)!r} (saved from {payload.get('class')}) does not fit "
            f"{type(module).__name__}: {detail}"
        ) from exc


def load_model(path: PathLike, model: nn.Module, *, map_location: Any = "cpu",
               strict: bool = True) -> nn.Module:
    """Load weights saved by :func:`save_model` into ``model`` and return ``model``.

    Args:
        path: The checkpoint file.
        model: A module built like the saved one (a ``torch.compile`` wrapper is fine).
        map_location: Where tensors land before they are copied into ``model``.
        strict: Require the keys to match exactly, as in ``load_state_dict``.

    Raises:
        CheckpointError: When the file is unreadable or its weights do not fit ``model``.
    """
    module = _unwrap(model)
    _load_into(module, _model_payload(path, map_location), path, strict)
    return model


def build_model(path: PathLike, *, map_location: Any = "cpu") -> nn.Module:
    """Rebuild a registry component from the spec stored by :func:`save_model` and load it.

    Args:
        path: A checkpoint written by :func:`save_model` with ``spec=...``.
        map_location: Where the weights land.

    Raises:
        CheckpointError: When the file is unreadable or stores no spec.
        UnknownComponentError: When the model's component is not installed; with the
            provenance :func:`save_model` recorded, the message names the distribution,
            its version and the ``pip install`` command.
    """
    payload, meta = load_checkpoint_with_meta(path, map_location=map_location)
    return model_from_payload(payload, meta, path)


def model_from_payload(payload: dict[str, Any], meta: dict[str, Any],
                       path: PathLike) -> nn.Module:
    """Rebuild the model of a :func:`save_model` checkpoint already read by
    :func:`load_checkpoint_with_meta` (``path`` names the file in errors).

    Raises:
        CheckpointError: When the payload holds no state_dict or no spec, or its weights do
            not fit the rebuilt component.
        UnknownComponentError: As :func:`build_model`.
    """
    from ebmcore.provenance import require_recorded

    _require_state_dict(payload, path)
    spec = payload.get("spec")
    if spec is None:
        raise CheckpointError(f"Checkpoint {str(path)!r} stores no spec; save it with "
                              f"save_model(path, model, spec={{'kind': ..., 'name': ..., "
                              f"'params': ...}}) or use load_model with a built model")
    try:
        spec = _check_spec(spec)
    except ValueError as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} has a damaged spec: {exc}") from exc
    recorded = meta.get("provenance")
    if isinstance(recorded, dict) and isinstance(recorded.get("model"), dict):
        require_recorded({"model": recorded["model"]},
                         {"model": {"name": spec["name"]}})
    model = ebmcore.create(spec["kind"], spec["name"], **spec["params"])
    _load_into(_unwrap(model), payload, path, strict=True)
    return model
