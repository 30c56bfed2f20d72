"""Shared test configuration: service fixtures live in fix_*.py modules."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fix_postgres", "tests.fix_kafka", "tests.fix_worker"]

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as an integration test."""
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
