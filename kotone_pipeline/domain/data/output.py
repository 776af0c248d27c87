"""Where a command may write: one check for every output path, before any work is done.

An output must never destroy anything: not the input it was read from (same inode, also through a
symlink or a hard link), not a directory where a file is expected (or the reverse), not a FIFO or a
device (``/dev/null`` as root would be replaced by a regular file). Commands that stream by design
write to stdout instead. Files are then written through ``jsonl.atomic_writer`` (temp file + rename),
so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path


class OutputError(ValueError):
    """An output path that would destroy data or cannot be written; nothing has been written."""


def _kind(mode: int) -> str | None:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return None


def check_output(
    path: Path | str,
    *,
    inputs: Iterable[Path | str | None] = (),
    directory: bool = False,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Refuse an output that is an input, the wrong kind of file, or a special file; make its parent.

    ``directory``: the output is a directory (its files are checked by the caller with this function).
    A missing parent directory is allowed when it can be created (at write time); ``say`` is told so."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        blocker = next(p for p in path.parents if p.exists() and not p.is_dir())
        raise OutputError(f"{blocker}: is not a directory, so {path} cannot be created") from None
    except OSError as exc:
        raise OutputError(f"{path}: cannot use as output ({exc.strerror})") from None
    if info is not None:
        special = _kind(info.st_mode)
        if special:
            raise OutputError(f"{path}: is {special}; refusing to replace it (write to a regular file)")
        if directory and not stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{path}: is a file, but a directory is expected here")
        if not directory and stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{path}: is a directory; name a file to write")
        for source in inputs:
            if source is None:
                continue
            try:
                other = os.stat(source)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                raise OutputError(f"{path}: is the input {source}; refusing to overwrite it (choose another output)")
    parent = path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{existing}: is not a directory, so {path} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{existing}: not writable, so {path} cannot be created")
    if existing != parent and say is not None:
        # Created only when the output is written (atomically), so a failed command leaves nothing.
        say(f"will create directory {parent}")
    return path
