"""The sampler a training run writes its samples with (``sample.sampler``): its checks, the
2-D recipe's choice, and that it mixes where the training sampler does not."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

import ebmcore
from ebmcore.cli import main
from ebmcore.config import (
    ConfigError,
    apply_overrides,
    check_train_config,
    defaults_for,
    merge_run,
    sample_sampler,
)
from ebmcore.runs.chains import RHAT_LIMIT
from ebmcore.runs.sampling import writing_sampler
from ebmcore.runs.trained_model import draw_samples

TOY = defaults_for("eight_gaussians")
LANGEVIN = {"name": "langevin", "params": {"step_size": 0.01}}


def _with(*items: str) -> dict:
    return apply_overrides(copy.deepcopy(TOY), items)


def test_a_name_or_a_table_names_the_sampler():
    assert sample_sampler({}) is None
    assert sample_sampler({"sampler": "mala"}) == {"name": "mala", "params": {}}
    assert sample_sampler({"sampler": LANGEVIN}) == LANGEVIN
    config = _with('sample.sampler={name = "langevin", params = {step_size = 0.01}}')
    check_train_config(config)
    assert config["sample"]["sampler"] == LANGEVIN


@pytest.mark.parametrize("item, message", [
    ("sample.sampler=3", "sample.sampler must be a sampler name or a table"),
    ('sample.sampler={name = "mala", param = {}}',
     "unknown key sample.sampler.param; did you mean 'params'"),
    ("sample.sampler={params = {}}", "sample.sampler.name must name a sampler"),
    ('sample.sampler={name = "mala", params = 3}', "sample.sampler.params must be a table"),
    ("sample.sampler=paralel_tempering", "sample.sampler: .*Did you mean 'parallel_tempering'"),
])
def test_a_malformed_sample_sampler_is_refused_naming_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        check_train_config(_with(item))


def test_a_renamed_sample_sampler_starts_from_its_own_defaults():
    """A file naming another sampler than the recipe's takes none of its parameters."""
    assert merge_run(TOY, {"sample": {"sampler": LANGEVIN}})["sample"]["sampler"] == LANGEVIN
    same = merge_run(TOY, {"sample": {"sampler": {"name": "parallel_tempering",
                                                  "params": {"swap_every": 2}}}})
    assert same["sample"]["sampler"]["params"] == {**TOY["sample"]["sampler"]["params"],
                                                   "swap_every": 2}


def test_the_2d_recipe_writes_with_parallel_tempering_and_images_keep_their_sampler():
    for name in ("eight_gaussians", "two_moons", "rings", "checkerboard"):
        block = sample_sampler(defaults_for(name)["sample"])
        assert block["name"] == "parallel_tempering"
        assert defaults_for(name)["sampler"]["name"] == "langevin"  # training's, unchanged
    assert "sampler" not in defaults_for("digits")["sample"]


def test_the_writing_sampler_is_built_from_the_section_or_is_the_runs_own():
    energy = ebmcore.create("energy", "gaussian", mean=[0.0, 0.0])
    own = ebmcore.create("sampler", "langevin", step_size=0.01)
    assert writing_sampler(energy, own, {}) is own
    built = writing_sampler(energy, own, TOY["sample"])
    assert type(built).__name__ == "ParallelTempering"
    bad = {"sampler": {"name": "parallel_tempering", "params": {"base": "mala",
                                                                "temperatures": [2, 1]}}}
    with pytest.raises(ConfigError, match="sample.sampler 'parallel_tempering': temperatures"):
        writing_sampler(energy, own, bad)
    field = ebmcore.create("model", "mlp_field", dim=2, hidden=[8])
    flow = ebmcore.create("sampler", "flow")
    assert writing_sampler(field, flow, TOY["sample"]) is flow  # a field is sampled as a flow


def _eight_modes() -> ebmcore.Energy:
    """The eight_gaussians data's own density: eight modes 2.2 apart, barriers of 4 nats."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], 1)
    return ebmcore.create("energy", "gaussian_mixture", means=means, covs=0.125).float()


def _draw(energy, sample_cfg, tmp_path):
    x0 = 10 * torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) - 5
    own = ebmcore.create("sampler", "langevin", step_size=0.01)
    return draw_samples(energy, own, x0, sample_cfg, 0, tmp_path, False)


def test_the_recipes_sampler_mixes_over_modes_where_langevin_stays(tmp_path):
    """With the recipe's [sample] section the chains visit every mode in proportion: R-hat
    below the limit, and the share of draws in each mode within 5 Monte Carlo standard errors
    of 1/8. Langevin, the training sampler (a user forcing it here), stays in the mode it
    started in: R-hat far above the limit, and the warning names the fix."""
    energy = _eight_modes()
    cfg = {**TOY["sample"], "n_chains": 64, "backend": "torch"}
    _, trajectory, metrics = _draw(energy, cfg, tmp_path)
    chains = metrics["chains"]
    assert chains["rhat"]["max"] <= RHAT_LIMIT and "warning" not in chains, chains
    angle = torch.atan2(trajectory[..., 1], trajectory[..., 0])
    mode = torch.round(angle / (2 * math.pi / 8)).long() % 8
    share = torch.stack([(mode == k).double().mean(0) for k in range(8)])  # (8, chains)
    mean, se = share.mean(1), share.std(1) / share.shape[1] ** 0.5
    assert ((mean - 1 / 8).abs() < 5 * se + 1e-3).all(), (mean, se)

    forced = _draw(energy, {**cfg, "sampler": LANGEVIN}, tmp_path)[2]["chains"]
    assert forced["rhat"]["max"] > 1.5
    assert "have not mixed" in forced["warning"] and "sample.sampler" in forced["warning"]


TINY = ["--steps", "15", "--set", "sample.n_chains=100", "--set", "sample.n_steps=20",
        "--set", "evaluate.n_test=1000", "--set", "evaluate.resolution=48",
        "--set", "loss.buffer_size=256", "--set", "loss.k=5", "--set", "train.batch_size=64",
        "--set", "sample.burn_in=20", "--quiet"]


def test_a_run_prints_the_r_hat_of_the_samples_it_wrote(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "sampled 100 chains with backend" in printed and "max R-hat" in printed
    assert "[sample.sampler]" in (out / "config.toml").read_text()
    chains = json.loads((out / "metrics.json").read_text())["sampling"]["chains"]
    assert chains["rhat"]["max"] > 0


def test_a_bad_sample_sampler_stops_the_run_before_training(tmp_path, capsys):
    out = tmp_path / "bad"
    code = main(["train", "--out", str(out), *TINY, "--set",
                 'sample.sampler={name = "parallel_tempering", params = {base = "mala"}}'])
    assert code != 0
    assert "sample.sampler 'parallel_tempering'" in capsys.readouterr().err
    assert not (out / "model.pt").exists()
