"""The registry sub-commands of the ``ebmcore`` command line."""

import json
import subprocess
import sys

import pytest

import ebmcore
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
    assert set(listing) == set(ebmcore.kinds())
    assert {"energy", "sampler", "loss", "model", "dataset"} <= set(listing)


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


def test_plugins_columns_stay_aligned_for_long_names(capsys):
    """The status and origin columns start where the longest plugin name leaves room."""
    from ebmcore.testing import isolated_registry

    class Short:
        @ebmcore.hookimpl
        def ebmcore_energies(self):
            return []

    with isolated_registry() as registry:
        registry.register(Short(), name="tiny", distribution="tiny-dist", version="1.0")
        registry.register(Short(), name="a_plugin_name_far_longer_than_fourteen",
                          distribution="long-dist", version="2.0")
        assert main(["plugins"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if not line.startswith(" ")]
    assert len(lines) == 2
    assert len({line.index("active") for line in lines}) == 1
    assert len({line.index("-dist") for line in lines}) == 1


def test_every_command_module_has_add_parser():
    """The one list of commands: each module attaches its parser and handler."""
    from ebmcore.cli import COMMANDS, build_parser

    assert all(callable(module.add_parser) for module in COMMANDS)
    (action,) = [a for a in build_parser()._actions if a.__class__.__name__ ==
                 "_SubParsersAction"]
    assert {"plugins", "list", "info", "train", "demo", "sample", "evaluate",
            "new-plugin"} <= set(action.choices)
    for sub in action.choices.values():
        assert callable(sub.get_default("handler"))


def test_command_error_lives_in_errors():
    from ebmcore.cli import CommandError
    from ebmcore.errors import CommandError as InErrors
    from ebmcore.errors import EbmcoreError

    assert CommandError is InErrors and issubclass(CommandError, EbmcoreError)


def test_the_old_command_modules_forward_with_a_warning():
    from ebmcore.cli import registry_commands, run_commands, summary

    with pytest.warns(DeprecationWarning, match="ebmcore.cli.summary.evaluation_lines"):
        assert run_commands.evaluation_lines is summary.evaluation_lines
    with pytest.warns(DeprecationWarning, match="ebmcore.cli.plugins.run"):
        from ebmcore.cli import plugins

        assert registry_commands.cmd_plugins is plugins.run
    with pytest.raises(AttributeError):
        run_commands.no_such_name  # noqa: B018


def test_a_reader_that_leaves_early_gets_no_error_message():
    """``ebmcore list | head -1``: the broken pipe ends the command quietly (status 141)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "ebmcore", "list"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


@pytest.mark.parametrize("command", [["sample", "--energy", "gaussian"], ["train"]])
def test_abbreviated_options_are_refused(command, capsys):
    # '--n' once matched '--nproc' by prefix and started a hundred processes
    with pytest.raises(SystemExit) as exc:
        main([*command, "--n", "100"])
    assert exc.value.code == 2
    assert "--n" in capsys.readouterr().err
