"""The top level exports what a user needs; moved names still resolve, with a warning."""

from __future__ import annotations

import importlib
import warnings

import pytest

import ebmcore


def test_every_exported_name_resolves_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ebmcore.__all__:
            assert getattr(ebmcore, name) is not None, name


@pytest.mark.parametrize("name, module", [
    ("KINDS", "ebmcore.component"), ("normalize_name", "ebmcore.component"),
    ("PluginRecord", "ebmcore.registry"), ("get_registry", "ebmcore.registry"),
    ("save_checkpoint", "ebmcore.checkpoint"), ("load_checkpoint", "ebmcore.checkpoint"),
    ("build_model", "ebmcore.checkpoint"),
])
def test_names_that_left_the_top_level_warn_and_point_to_their_module(name, module):
    assert name not in ebmcore.__all__
    with pytest.warns(DeprecationWarning, match=f"use {module}.{name}"):
        value = getattr(ebmcore, name)
    assert value is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", ["runs", "training", "threads", "evaluation", "config"])
def test_submodules_are_reachable_as_attributes(name):
    assert getattr(ebmcore, name) is importlib.import_module(f"ebmcore.{name}")
    assert name in dir(ebmcore)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ebmcore.nonsense  # noqa: B018


def test_runs_keeps_every_public_name_it_had():
    """ebmcore.runs became a package; what ``from ebmcore.runs import X`` found still works."""
    import ebmcore.runs as runs

    for name in ("DEFAULT_TRACE_CHAINS", "Log", "ReplayPictures", "build_training",
                 "chain_diagnostics", "evaluate_checkpoint", "is_image_dataset", "load_energy",
                 "prepare_output_dir", "resumable_checkpoints", "resume_run", "sample_run",
                 "train_run", "versions"):
        assert hasattr(runs, name), name
    assert set(runs.__all__) >= {"train_run", "resume_run", "sample_run", "evaluate_checkpoint"}
