"""Crashes at chosen points of a local store's writes, for the registry's recovery tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from kotone_pipeline.services import state_store
from kotone_pipeline.services.state_store import LocalStateStore


def crash_halfway_through_a_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next file written gets half its bytes into the temporary file, then the disk is full."""
    real = state_store.atomic_writer

    class Half:
        def __init__(self, handle: IO[Any]) -> None:
            self.handle = handle

        def write(self, data: bytes) -> None:
            self.handle.write(data[: len(data) // 2])
            raise OSError("disk full")

    @contextmanager
    def half_then_crash(path: Path | str, mode: str = "w") -> Iterator[Half]:
        with real(path, mode) as handle:
            yield Half(handle)

    monkeypatch.setattr(state_store, "atomic_writer", half_then_crash)


def crash_before_writing(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """The process dies before it writes ``key`` (every write before it is done)."""
    real = LocalStateStore.write

    def write(self: LocalStateStore, written: str, data: bytes) -> None:
        if written == key:
            raise OSError("killed")
        real(self, written, data)

    monkeypatch.setattr(LocalStateStore, "write", write)
