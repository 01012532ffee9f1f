from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.money import AssetCatalog
from tests.unit.harness import Harness


@pytest.fixture
def harness(tmp_path: Path, catalog: AssetCatalog) -> Harness:
    return Harness(tmp_path, catalog)
