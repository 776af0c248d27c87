"""Suite-wide settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kotone_pipeline_tests.shared_cycles import FinishedCycles, fingerprint, run_finished_cycles


@pytest.fixture(scope="session", autouse=True)
def shared_embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Every test gets its own KOTONE_HOME, but the sentence embeddings of the same texts are the same
    # everywhere: one cache for the session (job subprocesses inherit it) keeps end-to-end tests from
    # embedding the base set again and again. Tests of the cache itself set their own location.
    previous = os.environ.get("KOTONE_EMBEDDING_CACHE")
    os.environ["KOTONE_EMBEDDING_CACHE"] = str(tmp_path_factory.mktemp("embeddings"))
    yield
    if previous is None:
        os.environ.pop("KOTONE_EMBEDDING_CACHE", None)
    else:
        os.environ["KOTONE_EMBEDDING_CACHE"] = previous


@pytest.fixture(scope="session")
def finished_cycles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedCycles]:
    """Two real local cycles (c1, c2) run once for every module that reads them (shared_cycles.py says how
    to go on from them without changing what the others read)."""
    cycles = run_finished_cycles(tmp_path_factory.mktemp("shared") / "kotone")
    before = fingerprint(cycles.home)
    yield cycles
    changed = sorted({path for path, _ in set(before.items()) ^ set(fingerprint(cycles.home).items())})
    assert not changed, f"a test changed the shared cycles' home {cycles.home} (use copy_home): {changed[:5]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked `learning` train real pretrained weights for minutes: not in `make test`; they run when
    # selected by marker (`pytest -m learning`, or an expression naming it).
    if "learning" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a training run of minutes: select it with `pytest -m learning`")
    for item in items:
        if item.get_closest_marker("learning") is not None:
            item.add_marker(skip)
