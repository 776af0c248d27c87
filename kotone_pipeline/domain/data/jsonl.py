"""JSONL reading and writing: every bad line reported as ``path:line: reason``; atomic writes."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T")
UTF8_BOM = b"\xef\xbb\xbf"  # editors on Windows start UTF-8 files with it; it is no part of the first line


def problem_kind(reason: str) -> str:
    """What kind of problem a reason is, without its particulars: ``invalid JSON (...)`` -> ``invalid JSON``,
    ``energy: 99 is out of range`` -> ``energy``, ``duplicate id of line 3`` -> ``duplicate id of line N``."""
    cut = min((i for i in (reason.find(" ("), reason.find(": ")) if i > 0), default=len(reason))
    return re.sub(r"\d+", "N", reason[:cut]).strip() or reason


def problem_kinds(rejected: Iterable[tuple[int, str]]) -> str:
    """``(line, reason)`` pairs as one line naming each kind of problem with its count and first lines, so a
    file with many lines of one kind still shows the other kinds (the listing shows only the first 20)."""
    by_kind: dict[str, list[int]] = {}
    for lineno, reason in rejected:
        by_kind.setdefault(problem_kind(reason), []).append(lineno)
    parts = []
    for kind, lines in by_kind.items():
        shown = ", ".join(str(n) for n in lines[:3])
        if len(lines) == 1:
            parts.append(f"{kind}: 1 line (line {shown})")
        else:
            parts.append(f"{kind}: {len(lines)} lines ({'lines' if len(lines) <= 3 else 'first lines'} {shown})")
    return "; ".join(parts)


class DataFileError(ValueError):
    """A data file has bad lines; ``problems`` holds every ``path:line: reason``."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        if len(problems) == 1 and problems[0].startswith(f"{path}: "):  # the whole file, not one of its lines
            super().__init__(problems[0])
            return
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        kinds = problem_kinds(_numbered(path, problem) for problem in problems)
        super().__init__(f"{path}: {len(problems)} bad line(s): {kinds}\n{shown}{more}")


def _numbered(path: Path | str, problem: str) -> tuple[int, str]:
    """``path:line: reason`` back into (line, reason); 0 for a problem of the whole file."""
    rest = problem.removeprefix(f"{path}:")
    number, sep, reason = rest.partition(": ")
    return (int(number), reason) if sep and number.isdigit() else (0, rest.strip())


@dataclass
class ReadResult(Generic[T]):
    rows: list[T] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, raw line, reason)
    lines_read: int = 0  # non-blank lines: every one is either a row or rejected

    def check_accounting(self, path: Path | str) -> None:
        """kept + quarantined must equal lines read: a row that vanished is a bug, never silent."""
        if len(self.rows) + len(self.rejected) != self.lines_read:
            raise RuntimeError(
                f"{path}: read {self.lines_read} line(s) but kept {len(self.rows)} and rejected {len(self.rejected)}"
            )

    def accounting(self) -> str:
        return f"read {self.lines_read} line(s): kept {len(self.rows)} + quarantined {len(self.rejected)}"

    @property
    def problems(self) -> list[str]:
        return [f"{lineno}: {reason}" for lineno, _, reason in self.rejected]


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc and not msg.startswith(loc.split(".")[-1] + ":") else msg)
    return "; ".join(parts)


def _parse_line(line: str) -> tuple[Any | None, str | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        return None, f"invalid JSON ({str(exc).split(';')[0]})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


def iter_json_lines(path: Path, data: bytes | None = None) -> Iterator[tuple[int, str, Any | None, str | None]]:
    """Yield (line number, raw line, parsed object or None, error or None); blank lines are skipped.

    Each line is decoded on its own, so one bad byte costs that line only and every later line keeps
    its true number. An I/O error while reading names the file and the line it stopped at. ``data``: the
    file's bytes, read from a store elsewhere; ``path`` then only names it."""
    try:
        handle: IO[bytes] = io.BytesIO(data) if data is not None else path.open("rb")
    except FileNotFoundError as exc:
        raise DataFileError(path, [f"{path}: file not found"]) from exc
    except IsADirectoryError as exc:
        raise DataFileError(path, [f"{path}: is a directory, not a JSONL file"]) from exc
    except OSError as exc:
        raise DataFileError(path, [f"{path}: cannot open ({exc.strerror})"]) from exc
    with handle:
        lineno = 0
        while True:
            try:
                data = handle.readline()
            except OSError as exc:
                raise DataFileError(path, [f"{path}:{lineno + 1}: read error ({exc.strerror})"]) from exc
            if not data:
                return
            lineno += 1
            if lineno == 1:
                data = data.removeprefix(UTF8_BOM)
            try:
                line = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
                yield lineno, raw, None, f"not valid UTF-8 (byte {exc.start + 1}: {exc.reason})"
                continue
            if not line.strip():
                continue
            obj, error = _parse_line(line)
            yield lineno, line, obj, error


def read_jsonl(
    path: Path | str,
    parse: Callable[[dict[str, Any]], T],
    *,
    strict: bool = True,
    key: Callable[[T], Any] | None = None,
    data: bytes | None = None,
) -> ReadResult[T]:
    """Read and validate every line with ``parse`` (of ``data`` when given: ``path`` then only names it).

    strict: raise ``DataFileError`` listing every bad line (nothing is returned).
    otherwise: return good rows and the rejected lines with reasons (quarantine mode).
    key: rows must be unique by it; a repeat is rejected naming the line it repeats.
    """
    path = Path(path)
    result: ReadResult[T] = ReadResult()
    first_line: dict[Any, int] = {}
    for lineno, raw, obj, error in iter_json_lines(path, data):
        result.lines_read += 1
        if error is None:
            try:
                row = parse(obj)
            except ValidationError as exc:
                error = describe_validation_error(exc)
            except (ValueError, TypeError, KeyError) as exc:
                error = str(exc)
            else:
                seen = first_line.setdefault(key(row), lineno) if key is not None else lineno
                if seen == lineno:
                    result.rows.append(row)
                    continue
                error = f"duplicate id of line {seen}"
        result.rejected.append((lineno, raw, error))
    result.check_accounting(path)
    if strict and result.rejected:
        raise DataFileError(path, [f"{path}:{n}: {reason}" for n, _, reason in result.rejected])
    return result


def read_models(
    path: Path | str,
    model: type[BaseModel],
    *,
    strict: bool = True,
    key: Callable[[Any], Any] | None = None,
    data: bytes | None = None,
) -> ReadResult[Any]:
    return read_jsonl(path, model.model_validate, strict=strict, key=key, data=data)


def current_umask() -> int:
    """The process's umask; read from /proc where Linux shows it (setting it to read it back is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def created_mode(directory: bool = False) -> int:
    """The mode ``open()``/``mkdir()`` would give a new file or directory: 0o666/0o777 less the umask.
    ``tempfile``'s 0o600/0o700 would follow the file when renamed into place, so another user (a webserver,
    a daemon) could not read it."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextmanager
def atomic_writer(path: Path | str, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file the person asked for, never our hidden temporary one
        error = OSError(f"{path}: cannot write there ({exc.strerror or exc}); nothing was written")
        error.errno = exc.errno  # kept for callers that look (a full disk); not passed, so no subclass by errno
        raise error from exc
    try:
        os.fchmod(fd, created_mode())
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename in (None, tmp) and exc.errno is not None:  # a failed write (a full disk) names no file
            raise OSError(exc.errno, f"cannot write ({exc.strerror}); nothing was written", str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_jsonable(row: Any) -> Any:
    if isinstance(row, BaseModel):
        return row.model_dump(mode="json", exclude_none=True)
    return row


def jsonl_line(row: Any) -> str:
    return json.dumps(_to_jsonable(row), ensure_ascii=False, separators=(",", ":")) + "\n"


def jsonl_bytes(rows: Iterable[Any]) -> bytes:
    """What ``write_jsonl`` writes, for a store that takes bytes."""
    return "".join(jsonl_line(row) for row in rows).encode("utf-8")


def json_bytes(obj: Any) -> bytes:
    """What ``write_json`` writes, for a store that takes bytes."""
    return (json.dumps(_to_jsonable(obj), ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_jsonl(path: Path | str, rows: Iterable[Any]) -> int:
    """Atomically write rows (dicts or pydantic models); returns the number of rows."""
    count = 0
    with atomic_writer(path) as handle:
        for row in rows:
            handle.write(jsonl_line(row))
            count += 1
    return count


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_writer(path, "wb") as handle:
        handle.write(json_bytes(obj))


def rejected_path(output: Path | str) -> Path:
    output = Path(output)
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(f"{stem}.rejected.jsonl")


def write_rejected(output: Path | str, source: Path | str, rejected: list[tuple[int, str, str]]) -> Path:
    """Quarantine: bad lines with their reasons beside the output file."""
    target = rejected_path(output)
    write_jsonl(
        target,
        ({"source": str(source), "line": n, "reason": reason, "raw": raw} for n, raw, reason in rejected),
    )
    return target
