"""Where the loop's shared state lives: cycle documents and row files, the champion registry.

A ``StateStore`` holds files by key (``cycles/<id>/split_dataset.json``, ``champion.json``). Two
implementations: ``LocalStateStore``, files under a directory (the default, and on one machine or a
ReadWriteMany volume), and ``HfRepoStateStore`` (``services/hf_state_store.py``), the files of a Hugging Face
repo, which every pod reaches without a shared volume (docs/production.md, deploy/README.md).

Plain writes are for documents with one writer each. A change that depends on what is there (a promotion:
the champion and its history) goes through ``update``: the store reads the keys, asks ``change`` what to
write, and writes only if nobody wrote in between: a file lock locally, a commit naming its parent commit
on the Hub.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from kotone_pipeline.domain.data.jsonl import atomic_writer

# What a change asks to write, in order (the local store writes them one by one, in this order; the Hub
# in one commit).
Writes = Sequence[tuple[str, bytes]]
Change = Callable[[Mapping[str, bytes | None]], Writes]


class StateStoreError(RuntimeError):
    """The store cannot be read or written; the message names the store and the key."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class StateConflictError(StateStoreError):
    """Others kept writing the same keys: ``update`` gave up after its attempts."""


def check_key(key: str) -> str:
    """A relative path with no ``..``, no empty part and no backslash: the same key names the same file
    in every store."""
    if not key or key.startswith("/") or "\\" in key or any(part in ("..", ".") for part in key.split("/")):
        raise ValueError(f"state key {key!r} must be a relative path without '..'")
    if "" in key.split("/"):
        raise ValueError(f"state key {key!r} has an empty part")
    return key


class StateStore(ABC):
    """Files by key; see the module docstring."""

    name: str

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The file's bytes, or None when there is none."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Replace the file as a whole (a reader sees the old file or the new one, never a part)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def version(self, key: str) -> object:
        """A value that changes whenever the file may have changed (equal values: unchanged); cheap."""

    @abstractmethod
    def folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under ``prefix``, sorted."""

    @abstractmethod
    def list_files(self, prefix: str) -> list[str]:
        """Every file under ``prefix``, at any depth, as keys relative to it, sorted (one listing, however many)."""

    @abstractmethod
    def update(self, keys: Sequence[str], change: Change) -> None:
        """Read ``keys`` (None for a missing one), call ``change`` and write what it returns, only if no one
        wrote in between; ``change`` may be called again on fresher contents, so it must only decide.
        An exception from ``change`` leaves the store as it was."""

    @abstractmethod
    def move_folder(self, source: str, dest: str) -> bool:
        """Move every file under ``source`` to ``dest`` (which must not exist); False when there was none."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where a person finds the file: a path, or a URL."""

    @abstractmethod
    def sub(self, prefix: str) -> StateStore:
        """The same store, with keys under ``prefix``."""

    @abstractmethod
    def describe(self) -> str:
        """The store in a few words, for messages (``/srv/kotone/registry``, ``hf dataset org/repo``)."""


class LocalStateStore(StateStore):
    """Files under ``root``, written atomically (temporary file, then rename); ``update`` under an
    ``flock`` on ``lock_name`` in ``root``, which needs a file system with working locks across clients
    when ``root`` is shared (NFS v4 and the cloud file services have them)."""

    name = "local"

    def __init__(self, root: Path, lock_name: str = ".state.lock") -> None:
        self.root = Path(root).absolute()
        self.lock_name = lock_name

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise StateStoreError(f"{self.path(key)} is a directory, not a file", transient=False) from None

    def write(self, key: str, data: bytes) -> None:
        with atomic_writer(self.path(key), "wb") as handle:
            handle.write(data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def version(self, key: str) -> object:
        try:
            st = self.path(key).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def folders(self, prefix: str) -> list[str]:
        root = self.path(prefix) if prefix else self.root
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def list_files(self, prefix: str) -> list[str]:
        root = self.path(prefix) if prefix else self.root
        if not root.is_dir():
            return []
        return sorted(
            p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def update(self, keys: Sequence[str], change: Change) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            for key, data in change({key: self.read(key) for key in keys}):
                self.write(key, data)

    def move_folder(self, source: str, dest: str) -> bool:
        origin, target = self.path(source), self.path(dest)
        if not origin.is_dir():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(origin), str(target))
        return True

    def location(self, key: str) -> str:
        return str(self.path(key))

    def sub(self, prefix: str) -> LocalStateStore:
        return LocalStateStore(self.path(prefix), self.lock_name)

    def describe(self) -> str:
        return str(self.root)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / self.lock_name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
