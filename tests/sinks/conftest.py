"""Fixtures for the store tests.

chdb opens one data directory per process at a time: every fixture here closes what it
opened before the next test opens another directory.
"""

import pytest

from ramparts.sinks.clickhouse import ChdbBackend


@pytest.fixture
def backend(tmp_path):
    b = ChdbBackend(tmp_path / "store")
    yield b
    b.close()
