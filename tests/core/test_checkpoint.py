"""Tests for ebmcore.checkpoint: round trips, atomicity and rejection of bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

import ebmcore
from ebmcore import checkpoint as ckpt
from ebmcore.checkpoint import (
    build_model,
    load_checkpoint,
    load_checkpoint_with_meta,
    load_model,
    save_checkpoint,
    save_model,
)


def _training_payload() -> dict:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(7)
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.random.get_rng_state(),
        "generator": gen.get_state(),
        "step": 12,
        "loss": 0.25,
        "name": "run",
        "history": [1.0, 2.0, None],
        "pair": (1, "a"),
    }


def _assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


def _tmp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_round_trip_keeps_every_value_and_meta(tmp_path):
    payload = _training_payload()
    path = save_checkpoint(tmp_path / "sub" / "a.pt", payload, meta={"epoch": 3})
    assert path == tmp_path / "sub" / "a.pt" and path.is_file()
    loaded, meta = load_checkpoint_with_meta(path)
    _assert_same(payload, loaded)
    _assert_same(payload, load_checkpoint(str(path)))
    assert meta["epoch"] == 3
    assert meta["ebmcore_version"] == ebmcore.__version__
    assert meta["torch_version"] == torch.__version__
    assert _tmp_files(path.parent) == []


def test_loaded_optimizer_and_rng_states_are_usable(tmp_path):
    payload = _training_payload()
    path = save_checkpoint(tmp_path / "a.pt", payload)
    loaded = load_checkpoint(path)
    model = nn.Linear(3, 2)
    model.load_state_dict(loaded["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.load_state_dict(loaded["optimizer"])
    gen = torch.Generator()
    gen.set_state(loaded["generator"])
    expected = torch.Generator().manual_seed(7)
    assert torch.equal(torch.rand(5, generator=gen), torch.rand(5, generator=expected))


def test_truncated_file_is_rejected_and_other_checkpoint_still_loads(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.arange(1000.0)})
    bad = save_checkpoint(tmp_path / "bad.pt", {"w": torch.arange(1000.0)})
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ebmcore.CheckpointError) as info:
        load_checkpoint(bad)
    message = str(info.value)
    assert str(bad) in message and "\n" not in message
    assert torch.equal(load_checkpoint(good)["w"], torch.arange(1000.0))


def test_crash_mid_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "a.pt", {"w": torch.ones(3)})
    before = path.read_bytes()
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes that must never become the checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"w": torch.zeros(3)})
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert _tmp_files(tmp_path) == []


def test_crash_in_replace_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "a.pt", {"w": torch.ones(3)})

    def failing_replace(src, dst):
        raise OSError("rename failed (simulated)")

    monkeypatch.setattr(ckpt.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert _tmp_files(tmp_path) == []


def test_permissions_follow_the_umask_like_a_plain_save(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({}, plain)
    path = save_checkpoint(tmp_path / "a.pt", {})
    assert path.stat().st_mode == plain.stat().st_mode


def test_overwrite_replaces_content(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", {"w": torch.ones(3)})
    save_checkpoint(path, {"w": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["w"], torch.zeros(3))


def test_plain_torch_save_without_marker_is_rejected(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(3)}, path)
    with pytest.raises(ebmcore.CheckpointError, match="not an ebmcore checkpoint"):
        load_checkpoint(path)


def test_random_bytes_are_rejected(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ebmcore.CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pickled_object_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "version": 1, "meta": {},
                "payload": {"obj": _Marker()}}, path)
    _Marker.constructed = 0
    with pytest.raises(ebmcore.CheckpointError, match="cannot be read safely"):
        load_checkpoint(path)
    assert _Marker.constructed == 0


class _Marker:
    constructed = 0

    def __setstate__(self, state):  # would run if the file were unpickled unsafely
        type(self).constructed += 1


def test_newer_format_version_is_rejected(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION + 1, "meta": {},
                "payload": {}}, path)
    with pytest.raises(ebmcore.CheckpointError, match="format version"):
        load_checkpoint(path)


def test_missing_file_and_directory_are_rejected(tmp_path):
    with pytest.raises(ebmcore.CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ebmcore.CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("payload, where", [
    ({"model": nn.Linear(2, 2)}, "payload['model']"),
    ({"nested": [1, {"x": object()}]}, "payload['nested'][1]['x']"),
    ({(1, 2): 3}, "key (1, 2)"),
    ({"version": torch.__version__}, "payload['version'] has type TorchVersion"),
])
def test_unsafe_payload_is_refused_before_writing(tmp_path, payload, where):
    with pytest.raises(TypeError) as info:
        save_checkpoint(tmp_path / "a.pt", payload)
    assert where in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_payload_and_meta_arguments(tmp_path):
    with pytest.raises(TypeError, match="payload must be a dict"):
        save_checkpoint(tmp_path / "a.pt", [1, 2])
    with pytest.raises(TypeError, match="meta must be a dict"):
        save_checkpoint(tmp_path / "a.pt", {}, meta="x")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "a.pt", {}, meta={"torch_version": "1"})


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_model_round_trip_is_bit_for_bit(tmp_path):
    torch.manual_seed(1)
    source = _Net()
    source.count += 5
    path = save_model(tmp_path / "m.pt", source)
    target = _Net()
    assert load_model(path, target) is target
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key])
    x = torch.randn(8, 4)
    assert torch.equal(source.fc(x), target.fc(x))


def test_load_model_into_wrong_architecture_names_the_path(tmp_path):
    path = save_model(tmp_path / "m.pt", _Net())
    with pytest.raises(ebmcore.CheckpointError) as info:
        load_model(path, nn.Linear(2, 2))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_model_from_non_model_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", {"step": 1})
    with pytest.raises(ebmcore.CheckpointError, match="no model state_dict"):
        load_model(path, _Net())


def test_build_model_rebuilds_registry_component(tmp_path):
    spec = {"kind": "model", "name": "mlp", "params": {"dim": 3, "hidden": [8, 8]}}
    torch.manual_seed(2)
    source = ebmcore.create("model", "mlp", dim=3, hidden=[8, 8])
    path = save_model(tmp_path / "m.pt", source, spec=spec)
    rebuilt = build_model(path)
    assert type(rebuilt) is type(source)
    x = torch.randn(5, 3)
    assert torch.equal(source(x), rebuilt(x))


def test_build_model_without_spec_and_bad_spec(tmp_path):
    path = save_model(tmp_path / "m.pt", _Net())
    with pytest.raises(ebmcore.CheckpointError, match="stores no spec"):
        build_model(path)
    with pytest.raises(ValueError, match="spec must be a dict"):
        save_model(tmp_path / "n.pt", _Net(), spec={"name": "mlp"})
    with pytest.raises(ValueError, match="Unknown component kind"):
        save_model(tmp_path / "n.pt", _Net(), spec={"kind": "widget", "name": "mlp"})


def test_save_model_records_provenance_and_build_model_names_what_to_install(tmp_path):
    import types

    from ebmcore import Component, hookimpl
    from ebmcore.errors import UnknownComponentError
    from ebmcore.registry import Registry, use_registry

    plugin = types.ModuleType("acme")

    @hookimpl
    def ebmcore_models():
        return [Component("line", torch.nn.Linear, data_shape=None)]

    plugin.ebmcore_models = ebmcore_models
    registry = Registry(entry_points=False)
    registry.register(plugin, "acme", distribution="acme-ebm", version="0.1.0")
    spec = {"kind": "model", "name": "line", "params": {"in_features": 2, "out_features": 1}}
    path = tmp_path / "model.pt"
    with use_registry(registry):
        save_model(path, registry.create("model", "line", **spec["params"]), spec=spec)
        assert isinstance(build_model(path), torch.nn.Linear)
    _, meta = load_checkpoint_with_meta(path)
    assert meta["provenance"]["model"]["distribution"] == "acme-ebm"
    with use_registry(Registry(entry_points=False)), \
            pytest.raises(UnknownComponentError, match=r"pip install acme-ebm==0\.1\.0"):
        build_model(path)
