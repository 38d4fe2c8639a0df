"""The pytest plugin behind ``ebmcore.testing``: fixtures for plugin authors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ebmcore.registry import Registry
from ebmcore.testing import isolated_registry


@pytest.fixture
def ebmcore_registry() -> Iterator[Registry]:
    """An empty registry, active for one test; register plugin objects on it in-process.

    Example::

        def test_my_plugin(ebmcore_registry):
            ebmcore_registry.register(my_plugin_module, name="mine")
            assert "my_energy" in ebmcore.names("energy")
    """
    with isolated_registry() as registry:
        yield registry


@pytest.fixture
def ebmcore_registry_with_plugins() -> Iterator[Registry]:
    """A fresh registry that also discovers installed plugins, active for one test."""
    with isolated_registry(entry_points=True) as registry:
        yield registry
