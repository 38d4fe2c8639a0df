"""The run folder: creating it, and writing its JSON files and figures.

Every run (training, sampling) writes into one folder; in a distributed run rank 0 alone
writes it, and :func:`run_ranks` says which process that is.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: Receives one line per stage of a run.
Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A :data:`Log` that drops every line."""


def to_stderr(line: str) -> None:
    """A :data:`Log` that prints each line to standard error."""
    print(line, file=sys.stderr)


def prepare_output_dir(path: str | Path, *, overwrite: bool = False) -> Path:
    """Create ``path`` (and parents), check it is writable, and refuse to clobber a run.

    Raises:
        NotADirectoryError: When ``path`` is a file.
        OSError: When the folder cannot be created or written.
        FileExistsError: When it already holds a run and ``overwrite`` is false.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {str(out)!r} is a file")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output folder {str(out)!r} is not empty; choose another or pass overwrite=True")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ebmcore-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"cannot write to output folder {str(out)!r}: "
                      f"{exc.strerror or exc}") from None
    return out


def versions() -> dict[str, str]:
    """Versions of the software a run used, for its metrics file."""
    from importlib import metadata

    import ebmcore

    found = {"ebmcore": ebmcore.__version__, "torch": torch.__version__,
             "python": platform.python_version()}
    for dist in ("numba", "pluggy"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON; tensors become lists, dataclasses dicts."""
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as a PNG at the runs' resolution; return ``path``."""
    fig.savefig(path, dpi=110)
    return path


def run_ranks(distributed: bool) -> Any:
    """The processes that share a run folder: the initialised process group, or this
    process alone (a :class:`ebmcore.ranks.RankGroup`)."""
    from ebmcore.ranks import RankGroup

    return RankGroup.current("a distributed run") if distributed else RankGroup()
