"""Shared test helpers: where the golden fixtures live."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
STYLEGAN2_FIXTURES = FIXTURES / "stylegan2"
LATENT_FIXTURES = FIXTURES / "latent_transformer"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
