"""JSONL reading and writing: every bad line reported as ``path:line: reason``; atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T")


class DataFileError(ValueError):
    """A data file has bad lines; ``problems`` holds every ``path:line: reason``."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} bad line(s)\n{shown}{more}")


@dataclass
class ReadResult(Generic[T]):
    rows: list[T] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, raw line, reason)

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


def iter_json_lines(path: Path) -> Iterator[tuple[int, str, Any | None, str | None]]:
    """Yield (line number, raw line, parsed object or None, error or None); blank lines are skipped."""
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataFileError(path, [f"{path}: file not found"]) from exc
    except OSError as exc:
        raise DataFileError(path, [f"{path}: cannot open ({exc.strerror})"]) from exc
    with handle:
        lineno = 0
        while True:
            lineno += 1
            try:
                raw = handle.readline()
            except UnicodeDecodeError as exc:
                yield lineno, "", None, f"not valid UTF-8 ({exc.reason})"
                # The decoder cannot resynchronise reliably after a bad byte; stop here.
                return
            if not raw:
                return
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, line, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(obj, dict):
                yield lineno, line, None, f"expected a JSON object, got {type(obj).__name__}"
                continue
            yield lineno, line, obj, None


def read_jsonl(
    path: Path | str,
    parse: Callable[[dict[str, Any]], T],
    *,
    strict: bool = True,
) -> ReadResult[T]:
    """Read and validate every line with ``parse``.

    strict: raise ``DataFileError`` listing every bad line (nothing is returned).
    otherwise: return good rows and the rejected lines with reasons (quarantine mode).
    """
    path = Path(path)
    result: ReadResult[T] = ReadResult()
    for lineno, raw, obj, error in iter_json_lines(path):
        if error is None:
            try:
                result.rows.append(parse(obj))
                continue
            except ValidationError as exc:
                error = describe_validation_error(exc)
            except (ValueError, TypeError, KeyError) as exc:
                error = str(exc)
        result.rejected.append((lineno, raw, error))
    if strict and result.rejected:
        raise DataFileError(path, [f"{path}:{n}: {reason}" for n, _, reason in result.rejected])
    return result


def read_models(path: Path | str, model: type[BaseModel], *, strict: bool = True) -> ReadResult[Any]:
    return read_jsonl(path, model.model_validate, strict=strict)


@contextmanager
def atomic_writer(path: Path | str, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_jsonable(row: Any) -> Any:
    if isinstance(row, BaseModel):
        return row.model_dump(mode="json", exclude_none=True)
    return row


def write_jsonl(path: Path | str, rows: Iterable[Any]) -> int:
    """Atomically write rows (dicts or pydantic models); returns the number of rows."""
    count = 0
    with atomic_writer(path) as handle:
        for row in rows:
            handle.write(json.dumps(_to_jsonable(row), ensure_ascii=False, separators=(",", ":")))
            handle.write("\n")
            count += 1
    return count


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_writer(path) as handle:
        json.dump(_to_jsonable(obj), handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")


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
