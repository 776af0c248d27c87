"""The atomic writer: what it leaves on disk."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.jsonl import atomic_writer, created_mode, current_umask, write_json, write_jsonl


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_follow_the_umask_not_the_temp_files_0600(tmp_path: Path, umask_022: None) -> None:
    write_json(tmp_path / "doc.json", {"a": 1})
    write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    with atomic_writer(tmp_path / "blob.bin", "wb") as handle:
        handle.write(b"x")
    for name in ("doc.json", "rows.jsonl", "blob.bin"):
        assert _mode(tmp_path / name) == 0o644, name  # readable by a webserver or daemon of another user


def test_a_stricter_umask_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        assert current_umask() == 0o077
        write_json(tmp_path / "private.json", {"a": 1})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.json") == 0o600
    assert created_mode(directory=True) == 0o777 & ~old
