"""A throw-away virtual environment that sees the running interpreter's packages.

Plugin tests use it to install a freshly built plugin (``pip install --no-deps``) and run it
as a user would, without downloading torch or ebmcore again.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path


def parent_site_dirs() -> list[str]:
    """The running interpreter's existing site directories (global, then user), without
    repeats, in the order Python searches them."""
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"],
            sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def child_venv(path: str | Path, *, pth_name: str = "_ebmcore_parent_env.pth") -> Path:
    """Create a venv at ``path`` (without pip) that also sees this interpreter's packages, and
    return its Python.

    A ``.pth`` file named ``pth_name`` adds the parent's site directories rather than
    ``--system-site-packages``, which under tox would expose the base interpreter instead of
    the tox environment. Packages installed into the venv come first on its path.
    """
    path = Path(path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in parent_site_dirs()]
    Path(purelib, pth_name).write_text("\n".join(lines) + "\n")
    return python
