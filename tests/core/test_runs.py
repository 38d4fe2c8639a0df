"""Runs of a test plugin's components: built through the declared fields of their
descriptors (a model's ``data_shape``, a loss's ``takes_sampler``), never parameter names;
the train banner; and the provenance a run records for the error when a plugin goes."""

from __future__ import annotations

import pytest
import torch

import ebmcore
from ebmcore.runs.build import build_training, evaluation_work, is_image_dataset, shape_params
from ebmcore.testing import isolated_registry


class Cube(ebmcore.Dataset):
    """Standard normal points in 3-D."""

    event_shape = (3,)

    def sample(self, n, generator=None):
        return torch.randn(n, 3, generator=generator)


class Quadratic(ebmcore.Energy):
    """``|x|² / 2`` with one trainable scale; records the shape keywords it was given."""

    def __init__(self, dim: int = 5, event_shape=None) -> None:
        super().__init__()
        self.given = {"dim": dim, "event_shape": event_shape}
        self.event_shape = (3,)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return 0.5 * self.scale * x.flatten(1).square().sum(1)


class MeanEnergy(ebmcore.Loss):
    """Mean data energy; takes a ``sampler`` parameter it does not declare it needs."""

    def __init__(self, sampler=None) -> None:
        super().__init__()
        self.got_sampler = sampler

    def forward(self, model, x):
        return ebmcore.LossOutput(loss=model(x).mean())


class WithSampler(MeanEnergy):
    """The same loss, declaring ``takes_sampler``."""


class _Plugin:
    @ebmcore.hookimpl
    def ebmcore_datasets(self):
        return [ebmcore.Component("cube", Cube)]

    @ebmcore.hookimpl
    def ebmcore_models(self):
        C = ebmcore.Component
        return [C("flat_quadratic", Quadratic, data_shape="dim"),
                C("shaped_quadratic", Quadratic, data_shape="event_shape"),
                C("shapeless_quadratic", Quadratic)]

    @ebmcore.hookimpl
    def ebmcore_losses(self):
        return [ebmcore.Component("mean_energy", MeanEnergy),
                ebmcore.Component("with_sampler", WithSampler, takes_sampler=True)]


@pytest.fixture
def registry():
    with isolated_registry(entry_points=True) as reg:
        reg.register(_Plugin(), name="build_test", distribution="ebm-build-test",
                     version="0.3.1")
        yield reg


def _config(model: str, loss: str) -> dict:
    return {"seed": 0, "dataset": {"name": "cube", "params": {}},
            "model": {"name": model, "params": {}}, "loss": {"name": loss, "params": {}},
            "sampler": {"name": "langevin", "params": {"step_size": 0.1}}}


@pytest.mark.parametrize("model, given", [
    ("flat_quadratic", {"dim": 3, "event_shape": None}),
    ("shaped_quadratic", {"dim": 5, "event_shape": [3]}),
    ("shapeless_quadratic", {"dim": 5, "event_shape": None}),
])
def test_a_model_gets_the_data_shape_its_descriptor_asks_for(registry, model, given):
    built = build_training(_config(model, "mean_energy"))
    assert built["model"].given == given


def test_a_loss_gets_the_sampler_only_when_its_descriptor_says_so(registry):
    plain = build_training(_config("flat_quadratic", "mean_energy"))
    assert plain["loss"].got_sampler is None  # a parameter called sampler is not enough
    wanting = build_training(_config("flat_quadratic", "with_sampler"))
    assert wanting["loss"].got_sampler is wanting["sampler"]


def test_shape_params_of_images():
    descriptor = ebmcore.Component("m", Quadratic, data_shape="dim")
    images = type("Images", (ebmcore.Dataset,), {"event_shape": (1, 8, 8)})()
    assert shape_params(descriptor, images) == {"dim": 64}
    shaped = ebmcore.Component("m", Quadratic, data_shape="event_shape")
    assert shape_params(shaped, images) == {"event_shape": [1, 8, 8]}


def test_image_data_is_recognised_by_its_protocol_not_its_attributes():
    from ebmcore.dataset import ImageDataset

    lookalike = type("Lookalike", (ebmcore.Dataset,), {
        "event_shape": (1, 8, 8), "held_out": lambda self: self})()
    assert not is_image_dataset(lookalike)
    declared = type("Declared", (ImageDataset,), {"event_shape": (1, 8, 8)})()
    assert is_image_dataset(declared)


def test_evaluation_work_counts_parameters_and_buffers_per_row():
    model = Quadratic()
    assert evaluation_work(model, 10) == 10 * 3  # one parameter, at least one per coordinate
    gaussian = ebmcore.create("energy", "gaussian", mean=[0.0] * 4)
    size = sum(t.numel() for t in (*gaussian.parameters(), *gaussian.buffers()))
    assert evaluation_work(gaussian, 7) == 7 * max(size, 4)


def test_the_banner_names_a_sampler_only_for_a_loss_that_uses_one(registry, tmp_path):
    """A loss that draws no negatives trains with no sampler, and the banner says none."""
    from ebmcore.runs import train_run

    settings = {"train": {"steps": 2, "batch_size": 8, "log_every": 1},
                "evaluate": {"n_test": 40, "resolution": 8},
                "sample": {"n_chains": 8, "n_steps": 4, "burn_in": 0, "thin": 1,
                           "backend": "torch", "trace_chains": 8}}
    lines: list[str] = []
    train_run({**_config("flat_quadratic", "mean_energy"), **settings}, tmp_path / "plain",
              log=lines.append)
    assert lines[0] == "training flat_quadratic on cube with mean_energy for 2 steps"
    lines.clear()
    metrics = train_run({**_config("flat_quadratic", "with_sampler"), **settings},
                        tmp_path / "with", log=lines.append)
    assert lines[0] == "training flat_quadratic on cube with with_sampler + langevin for 2 steps"
    # the run's box came from the test points (the data set declares none)
    assert metrics["sampling"]["chains"]["total_chains"] == 8


def _tiny_run(tmp_path, registry) -> dict:
    from ebmcore.runs import train_run

    config = {**_config("flat_quadratic", "mean_energy"),
              "train": {"steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 1},
              "evaluate": {"n_test": 40},
              "sample": {"n_chains": 8, "n_steps": 4, "burn_in": 0, "thin": 1,
                         "backend": "torch", "trace_chains": 8}}
    return train_run(config, tmp_path / "run")


def test_a_run_records_where_its_components_came_from(registry, tmp_path):
    from ebmcore.checkpoint import load_checkpoint_with_meta

    metrics = _tiny_run(tmp_path, registry)
    recorded = metrics["provenance"]
    assert recorded["model"]["distribution"] == "ebm-build-test"
    assert recorded["dataset"]["version"] == "0.3.1"
    assert recorded["sampler"]["builtin"]
    _, meta = load_checkpoint_with_meta(tmp_path / "run" / "model.pt")
    assert meta["provenance"] == recorded


def test_evaluate_and_resume_name_a_missing_plugin_and_its_install(registry, tmp_path):
    """With the plugin gone, the errors name its distribution and how to install it."""
    from ebmcore.runs import evaluate_checkpoint, resume_run

    _tiny_run(tmp_path, registry)
    with isolated_registry(entry_points=True):  # the test plugin is not installed here
        with pytest.raises(ebmcore.UnknownComponentError, match="ebm-build-test") as info:
            evaluate_checkpoint(tmp_path / "run", n_test=20, n_ais_chains=4, n_ais_temps=3)
        assert "pip install" in str(info.value) and "0.3.1" in str(info.value)
        with pytest.raises(ebmcore.UnknownComponentError, match="ebm-build-test"):
            resume_run(tmp_path / "run")
