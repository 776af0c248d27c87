"""Import the predecessor's data format, and load training/eval files in either format.

Predecessor rows: ``request_text`` (the input text, whatever its kind), ``source_type``,
``target_hidden_params.vector`` (six dims on the scale the caller names: 10 or 100), optional
``messages`` (its chat-formatted copy, used for the text only when ``request_text`` is absent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from kotone_pipeline.domain.data.dims import SOURCE_TYPES
from kotone_pipeline.domain.data.jsonl import (
    DataFileError,
    ReadResult,
    describe_validation_error,
    iter_json_lines,
    problem_kinds,
    read_models,
)
from kotone_pipeline.domain.data.schemas import Pair, Vector, normalize_text

FileFormat = Literal["pair", "predecessor"]
SCALES = (10, 100)


def imported_group_id(text: str) -> str:
    """Stable group for an imported row: the predecessor has no item ids, so the text is the item."""
    return "imp_" + hashlib.sha1(normalize_text(text).encode()).hexdigest()[:16]


def _text_of(row: dict[str, Any]) -> str:
    text = row.get("request_text")
    if text is None:
        messages = row.get("messages")
        if isinstance(messages, list):
            users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
            text = users[-1] if users else None
    if text is None:
        raise ValueError("request_text: missing (and no user message to take it from)")
    if not isinstance(text, str):
        raise ValueError(f"request_text: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("request_text: empty")
    return text


def parse_predecessor_row(row: dict[str, Any], scale: int, source: str = "") -> Pair:
    """One predecessor row -> Pair (origin ``imported``); ValueError naming the field when bad."""
    if scale not in SCALES:
        raise ValueError(f"scale must be 10 or 100, got {scale!r}")
    text = _text_of(row)
    source_type = row.get("source_type")
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"source_type: {source_type!r} is not one of {', '.join(SOURCE_TYPES)}")
    target = row.get("target_hidden_params")
    if not isinstance(target, dict) or "vector" not in target:
        raise ValueError("target_hidden_params.vector: missing")
    try:
        vector = Vector.parse(target["vector"], scale=scale)
    except ValidationError as exc:
        raise ValueError(f"target_hidden_params.vector: {describe_validation_error(exc)}") from exc
    except ValueError as exc:
        raise ValueError(f"target_hidden_params.vector: {str(exc).removeprefix('vector: ')}") from exc
    meta: dict[str, Any] = {"import_scale": scale}
    if source:
        meta["import_source"] = source
    return Pair(
        group_id=imported_group_id(text),
        source_type=source_type,
        text=text,
        vector=vector,
        origin="imported",
        meta=meta,
    )


def scale_warning(pairs: Sequence[Pair], scale: int) -> str | None:
    """A 0..10 file imported as 0..100 collapses every value to 0 or 1 (the predecessor's mixed-scale
    defect); say so instead of silently producing such labels."""
    if scale != 100 or len(pairs) < 3:
        return None
    if all(value <= 1 for pair in pairs for value in pair.vector.values()):
        return (
            f"all {len(pairs)} imported vectors came out as 0 or 1: the file looks like 0..10 data; "
            "if so, re-run with --scale 10"
        )
    return None


def import_file(path: Path | str, scale: int, strict: bool = True) -> ReadResult[Pair]:
    """Read a predecessor-format JSONL file. strict: raise DataFileError listing every bad line.

    A repeated (source_type, text) is one item labelled twice, possibly differently: the repeat is
    rejected, naming the line it repeats.
    """
    if scale not in SCALES:
        raise ValueError(f"--scale must be 10 or 100, got {scale!r}")
    path = Path(path)
    result: ReadResult[Pair] = ReadResult()
    first_line: dict[str, int] = {}
    for lineno, raw, obj, error in iter_json_lines(path):
        result.lines_read += 1
        if obj is not None:
            try:
                pair = parse_predecessor_row(obj, scale, path.name)
            except ValueError as exc:  # pydantic's ValidationError included
                error = str(exc)
            else:
                if pair.id in first_line:
                    error = f"duplicate of line {first_line[pair.id]} (same source_type and text)"
                else:
                    first_line[pair.id] = lineno
                    result.rows.append(pair)
                    continue
        result.rejected.append((lineno, raw, error or "invalid"))
    result.check_accounting(path)
    if strict and result.rejected:
        raise DataFileError(path, [f"{path}:{n}: {reason}" for n, _, reason in result.rejected])
    return result


def detect_format(path: Path | str) -> FileFormat:
    """Format of a file from its first valid JSON object line."""
    path = Path(path)
    bad: list[tuple[int, str]] = []
    for lineno, _raw, obj, error in iter_json_lines(path):
        if obj is None:
            bad.append((lineno, error or "invalid"))
            continue
        if "target_hidden_params" in obj:
            return "predecessor"
        if "vector" in obj:
            return "pair"
        raise DataFileError(
            path,
            [
                f"{path}:{lineno}: neither a Pair (has no 'vector') nor a predecessor row "
                f"(has no 'target_hidden_params'); keys: {', '.join(sorted(obj)) or 'none'}"
            ],
        )
    if not bad:
        raise DataFileError(path, [f"{path}: no valid JSON object line: the file is empty"])
    raise DataFileError(path, [f"{path}: no valid JSON object line: {problem_kinds(bad)}"])


def load_pairs(
    path: Path | str, scale: int | None = None, strict: bool = True, unique: bool = False
) -> ReadResult[Pair]:
    """Load Pairs from this project's Pair JSONL or the predecessor's format (auto-detected).

    The predecessor format needs ``scale`` (10 or 100); Pair files are always on 0..10, so a scale
    other than 10 for them is a mistake worth stopping on.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "predecessor":
        if scale is None:
            raise ValueError(f"{path}: predecessor-format file; pass --scale 10 or --scale 100")
        return import_file(path, scale, strict=strict)
    if scale not in (None, 10):
        raise ValueError(f"{path}: Pair files are on the 0..10 scale; --scale {scale} does not apply")
    # unique: training data where one id twice would weigh an item double (import_file always dedupes).
    return read_models(path, Pair, strict=strict, key=(lambda pair: pair.id) if unique else None)
