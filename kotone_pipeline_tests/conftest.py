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
