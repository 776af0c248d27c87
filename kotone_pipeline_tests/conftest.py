"""Suite-wide settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked `learning` train real pretrained weights for minutes: not in `make test`; they run when
    # selected by marker (`pytest -m learning`, or an expression naming it).
    if "learning" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a training run of minutes: select it with `pytest -m learning`")
    for item in items:
        if item.get_closest_marker("learning") is not None:
            item.add_marker(skip)
