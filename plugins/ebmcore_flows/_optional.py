"""Importing the optional packages of the ``flows`` extra with an error that says how to get
them."""

from __future__ import annotations

import importlib
from types import ModuleType

from ebmcore.errors import MissingDependencyError

#: The install command the errors name.
INSTALL_HINT = 'pip install "ebmcore[flows]"'


def import_optional(module: str, package: str, needed_by: str) -> ModuleType:
    """Return the imported ``module``, or raise :class:`~ebmcore.errors.MissingDependencyError`
    (an ``ImportError``) saying that ``needed_by`` needs the distribution ``package``.

    Args:
        module: The module to import (``"ot"``).
        package: The distribution that provides it (``"pot"``).
        needed_by: What needs it, for the message (``"coupling 'exact_ot'"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{needed_by} needs the optional package {package!r}, which is not installed "
            f"({type(exc).__name__}: {exc}). Install it with: {INSTALL_HINT}"
        ) from exc
