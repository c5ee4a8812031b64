"""Shared pytest fixtures (shared code lives in tests/helpers/)."""

from pathlib import Path

import pytest

from tests.helpers.paths import FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
