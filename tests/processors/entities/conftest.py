"""The built-in catalog and its matcher, built once for the entity tests."""

from __future__ import annotations

import pytest

from processors.entities import EntityCatalog, EntityMatcher


@pytest.fixture(scope="session")
def catalog() -> EntityCatalog:
    return EntityCatalog.builtin()


@pytest.fixture(scope="session")
def matcher(catalog: EntityCatalog) -> EntityMatcher:
    return EntityMatcher(catalog)
