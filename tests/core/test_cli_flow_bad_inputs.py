"""Bad inputs on the command line: a field where an energy is needed and the reverse, and a
coupling whose optional package is missing, are refused before anything is trained, sampled
or left in the output folder."""

import re
import sys

import pytest

import ebmcore
from ebmcore.checkpoint import save_model
from ebmcore.cli import main

TINY = ["--dataset", "eight_gaussians", "--steps", "2", "--set", "train.batch_size=16",
        "--quiet"]


@pytest.mark.parametrize("args, match", [
    (["--loss", "flow_matching", "--model", "mlp"],
     "MLPEnergy is an energy, sampled by MCMC, but sampler 'flow' is not an MCMC sampler"),
    (["--loss", "flow_matching", "--sampler", "langevin", "--set", "sampler.step_size=0.1"],
     "MLPField is a vector field .* MCMC sampler 'langevin' cannot sample"),
    (["--loss", "energy_matching", "--model", "mlp_field", "--sampler", "flow"],
     "MLPField is a vector field .* an ebmcore.Energy is needed here"),
])
def test_train_refuses_a_model_its_sampler_or_loss_cannot_use(args, match, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, *args, "--out", str(out)]) == 1
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists()  # no half-written run folder


def test_sample_refuses_an_mcmc_sampler_for_a_field_and_a_flow_for_an_energy(tmp_path,
                                                                             capsys):
    params = {"dim": 2, "hidden": [8]}
    field = ebmcore.create("model", "mlp_field", **params)
    checkpoint = save_model(tmp_path / "model.pt", field,
                            spec={"kind": "model", "name": "mlp_field", "params": params})
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(checkpoint), "--sampler", "langevin",
                 "--set", "sampler.step_size=0.1", "--out", str(out), "--quiet"]) == 1
    assert "--sampler: MLPField is a vector field" in capsys.readouterr().err
    assert main(["sample", "--energy", "double_well", "--sampler", "flow", "--out", str(out),
                 "--quiet"]) == 1
    assert "--sampler: DoubleWell is an energy" in capsys.readouterr().err
    assert not out.exists()


def test_a_coupling_without_pot_is_refused_before_the_run_starts(tmp_path, monkeypatch,
                                                                 capsys):
    monkeypatch.setitem(sys.modules, "ot", None)  # `import ot` raises ImportError
    out = tmp_path / "run"
    assert main(["train", *TINY, "--loss", "flow_matching", "--set", "loss.coupling=exact_ot",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "coupling 'exact_ot' needs the optional package 'pot'" in err
    assert 'pip install "ebmcore[flows]"' in err
    assert not out.exists()
