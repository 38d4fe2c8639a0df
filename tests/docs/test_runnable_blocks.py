"""Python blocks marked ``<!-- test -->`` in the docs run, in order, one process per page.

Convention: a fenced block that starts with a line reading exactly ```` ```python ```` and
comes right after a line ``<!-- test -->`` (blank lines between are allowed) is runnable. All
runnable blocks of a page share one namespace, like a reader's session. Tracebacks point at
the Markdown file and line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLE_SRC = ROOT / "examples" / "ebmcore-example-plugin" / "src"
MARKER = "<!-- test -->"

#: Pages that must keep at least one runnable block (the tutorials).
TUTORIALS = ("tutorial.md", "training.md", "kernels.md", "writing-a-plugin.md")

_RUNNER = """
import json, sys
namespace = {"__name__": "__docs__"}
for path, start, code in json.load(sys.stdin):
    # Pad so that line numbers in tracebacks are the Markdown file's line numbers.
    exec(compile("\\n" * (start - 1) + code, path, "exec"), namespace)
"""


def runnable_blocks(page: Path) -> list[tuple[int, str]]:
    """Return ``(first code line, code)`` of each runnable block of ``page``.

    Raises:
        ValueError: A marker is not followed by a ```` ```python ```` block.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j == len(lines) or lines[j].rstrip() != "```python":
            raise ValueError(f"{page.name}:{i + 1}: {MARKER} must be followed by ```python")
        k = j + 1
        while k < len(lines) and lines[k].rstrip() != "```":
            k += 1
        if k == len(lines):
            raise ValueError(f"{page.name}:{j + 1}: unterminated code block")
        blocks.append((j + 2, "\n".join(lines[j + 1:k]) + "\n"))
        i = k + 1
    return blocks


def _pages_with_blocks() -> list[Path]:
    return [p for p in sorted(DOCS.rglob("*.md")) if MARKER in p.read_text(encoding="utf-8")]


def test_marker_parsing(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n<!-- test -->\n\n```python\nx = 1\ny = 2\n```\n"
                    "```python\nnot marked\n```\n<!-- test -->\n```python\nz = x\n```\n")
    assert runnable_blocks(page) == [(5, "x = 1\ny = 2\n"), (13, "z = x\n")]
    page.write_text("<!-- test -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="must be followed by"):
        runnable_blocks(page)


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorials_keep_runnable_blocks(name):
    assert runnable_blocks(DOCS / name), f"docs/{name} has no {MARKER} python block"


@pytest.mark.slow  # about 10 s a page: each imports torch and samples
@pytest.mark.parametrize("page", _pages_with_blocks(), ids=lambda p: str(p.relative_to(DOCS)))
def test_runnable_blocks_run(page, tmp_path):
    blocks = [(str(page), start, code) for start, code in runnable_blocks(page)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMCORE_")}
    # The example plugin is imported from its source tree, as its README's tests do.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLE_SRC),
                                                      env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(blocks),
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, f"{page.name}:\n{done.stdout}\n{done.stderr}"
