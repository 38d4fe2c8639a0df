"""The registry sub-commands of the ``ebmcore`` command line."""

import json
import subprocess
import sys

import pytest

from ebmcore.cli import main


def test_plugins_json_lists_the_five_builtins_as_active(capsys):
    assert main(["plugins", "--json"]) == 0
    records = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in ("energies", "samplers", "losses", "models", "datasets"):
        assert records[name]["status"] == "active" and records[name]["builtin"]
    assert "langevin" in records["samplers"]["components"]["sampler"]


def test_plugins_text_lists_status(capsys):
    assert main(["plugins"]) == 0
    assert "samplers" in capsys.readouterr().out


def test_list_one_kind_and_all(capsys):
    assert main(["list", "sampler"]) == 0
    out = capsys.readouterr().out
    assert "langevin" in out and "mala" in out
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == {"energy", "sampler", "loss", "model", "dataset"}


def test_unknown_kind_is_one_line_nonzero(capsys):
    assert main(["list", "smplr"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebmcore: error: Unknown component kind 'smplr'")
    assert len(err.strip().splitlines()) == 1


def test_misspelt_name_gets_did_you_mean(capsys):
    assert main(["info", "sampler", "langevn"]) == 1
    err = capsys.readouterr().err
    assert "Did you mean 'langevin'" in err and "Traceback" not in err


def test_info_shows_parameters(capsys):
    assert main(["info", "sampler", "langevin", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["plugin"] == "samplers"
    assert "step_size" in [p["name"] for p in info["parameters"]]


def test_missing_subcommand_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_console_script_runs_as_module():
    done = subprocess.run([sys.executable, "-m", "ebmcore", "list", "nope"], capture_output=True,
                          text=True)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Unknown component kind" in done.stderr
