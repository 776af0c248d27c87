from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.orchestration.resources import resources_from_env


@pytest.fixture
def kotone_home(tmp_path: Path) -> Path:
    home = tmp_path / "kotone"
    home.mkdir()
    return home


@pytest.fixture
def resources(kotone_home: Path) -> dict[str, object]:
    return resources_from_env({"KOTONE_HOME": str(kotone_home), "KOTONE_CAMPAIGN_SIZE": "2"})


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst
