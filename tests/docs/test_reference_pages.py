"""The hook and command-line reference pages cover every hook spec and every command."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ebmcore import hookspecs
from ebmcore.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _sections(page: Path, level: str) -> dict[str, str]:
    """Map each heading of the given level (e.g. '##') to the text under it."""
    text = page.read_text(encoding="utf-8")
    parts = re.split(rf"^{level} (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _hook_specs() -> list[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
                  if hasattr(fn, marker))


def test_hook_specs_are_found():
    # Guards the discovery below: the specs are the functions pluggy marked.
    assert set(_hook_specs()) == set(hookspecs.HOOK_KINDS)


@pytest.mark.parametrize("hook", _hook_specs())
def test_every_hook_spec_has_a_section(hook):
    sections = _sections(DOCS / "hooks.md", "##")
    assert hook in sections, f"docs/hooks.md has no '## {hook}' section"
    body = sections[hook]
    assert f"::: ebmcore.hookspecs.{hook}" in body, "the section must render the spec docstring"
    kind = hookspecs.HOOK_KINDS[hook]
    assert f"Kind `{kind}`" in body


def test_hooks_page_documents_no_removed_hook():
    documented = {h for h in _sections(DOCS / "hooks.md", "##") if h.startswith("ebmcore_")}
    assert documented == set(_hook_specs())


def _subcommands() -> dict[str, object]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_and_option_is_documented(command):
    sections = _sections(DOCS / "cli.md", "###")
    heading = f"ebmcore {command}"
    assert heading in sections, f"docs/cli.md has no '### {heading}' section"
    body = sections[heading]
    sub = _subcommands()[command]
    for action in sub._actions:
        if action.dest == "help":
            continue
        if action.option_strings:
            longest = max(action.option_strings, key=len)
            assert longest in body, f"'{heading}' does not document {longest}"
        else:
            assert action.dest.upper() in body, f"'{heading}' does not document {action.dest}"
