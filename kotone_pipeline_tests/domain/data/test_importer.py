"""Predecessor import: explicit scale, half-up conversion, every bad line named; format auto-detection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kotone_pipeline.domain.data.importer import detect_format, import_file, imported_group_id, load_pairs
from kotone_pipeline.domain.data.jsonl import DataFileError, write_jsonl
from kotone_pipeline.domain.data.schemas import Pair, Vector


def _row(text: str, values: Any, source_type: str = "request_text", **extra: Any) -> dict[str, Any]:
    dims = ["energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia"]
    vector = dict(zip(dims, values, strict=False)) if isinstance(values, list) else values
    return {
        "request_text": text,
        "source_type": source_type,
        "target_hidden_params": {"vector": vector},
        **extra,
    }


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_scale_100_converts_half_up(tmp_path: Path) -> None:
    # 65 -> 7 and 25 -> 3 under half-up; Python's round() would give 6 and 2.
    path = _write(tmp_path / "old.jsonl", [_row("a hushed warm tune", [65, 25, 0, 100, 44.9, 45])])
    (pair,) = import_file(path, scale=100).rows
    assert pair.vector == Vector(energy=7, warmth=3, brightness=0, acousticness=10, complexity=4, nostalgia=5)
    assert pair.origin == "imported"
    assert pair.meta["import_scale"] == 100


def test_scale_10_keeps_values_and_group_is_stable_by_text(tmp_path: Path) -> None:
    rows = [
        _row("A  hushed tune", [1, 2, 3, 4, 5, 6]),
        _row("style: x\nmood: y", [6, 5, 4, 3, 2, 1], "rule_prompt"),
    ]
    first = import_file(_write(tmp_path / "a.jsonl", rows), scale=10).rows
    again = import_file(_write(tmp_path / "b.jsonl", list(reversed(rows))), scale=10).rows
    assert first[0].vector.values() == (1, 2, 3, 4, 5, 6)
    assert [p.source_type for p in first] == ["request_text", "rule_prompt"]
    assert {p.id: p.group_id for p in first} == {p.id: p.group_id for p in again}
    # Normalisation (whitespace, case) does not change the group.
    assert first[0].group_id == imported_group_id("a hushed TUNE")


def test_text_comes_from_the_user_message_when_request_text_is_absent(tmp_path: Path) -> None:
    row = _row("unused", [1] * 6)
    del row["request_text"]
    row["messages"] = [{"role": "system", "content": "rules"}, {"role": "user", "content": "a gentle waltz"}]
    (pair,) = import_file(_write(tmp_path / "m.jsonl", [row]), scale=10).rows
    assert pair.text == "a gentle waltz"


def test_strict_mode_lists_every_bad_line_with_path_and_reason(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.jsonl",
        [
            _row("fine one", [1] * 6),  # 1
            _row("fractional", [7.5, 1, 1, 1, 1, 1]),  # 2
            _row("too big", [11, 1, 1, 1, 1, 1]),  # 3
            _row("string", ["7", 1, 1, 1, 1, 1]),  # 4
            _row("short", [1, 1, 1, 1, 1]),  # 5
            _row("odd source", [1] * 6, source_type="voice"),  # 6
            "{not json",  # 7
            _row("FINE  one", [2] * 6),  # 8: the same item as line 1 labelled again
        ],
    )
    with pytest.raises(DataFileError) as info:
        import_file(path, scale=10)
    problems = info.value.problems
    assert [p.split(": ")[0] for p in problems] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6, 7, 8)]
    joined = "\n".join(problems)
    for reason in ("non-integral 7.5", "out of range 0..10", "got str", "missing dim(s) nostalgia",
                   "source_type: 'voice'", "invalid JSON", "duplicate of line 1"):  # fmt: skip
        assert reason in joined


def test_quarantine_mode_keeps_good_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.jsonl", [_row("good", [3] * 6), _row("bad", [30, 3, 3, 3, 3, 3])])
    result = import_file(path, scale=10, strict=False)
    assert [p.text for p in result.rows] == ["good"]
    assert [(n, reason) for n, _, reason in result.rejected] == [
        (2, "target_hidden_params.vector: energy: 30 is out of range 0..10")
    ]
    # On scale 100 the same value is valid.
    assert len(import_file(path, scale=100).rows) == 2


def test_scale_must_be_10_or_100(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="10 or 100"):
        import_file(_write(tmp_path / "x.jsonl", [_row("x", [1] * 6)]), scale=50)


def test_load_pairs_detects_the_format_per_file(tmp_path: Path) -> None:
    pair = Pair(group_id="g1", source_type="request_text", text="a bright jingle", vector=Vector.neutral())
    pair_file = tmp_path / "pairs.jsonl"
    write_jsonl(pair_file, [pair])
    old_file = _write(tmp_path / "old.jsonl", ["", "{broken", _row("an old tune", [50] * 6)])

    assert detect_format(pair_file) == "pair"
    assert detect_format(old_file) == "predecessor"  # decided by the first *valid* line
    assert load_pairs(pair_file).rows == [pair]
    with pytest.raises(ValueError, match="pass --scale"):
        load_pairs(old_file)
    with pytest.raises(ValueError, match="0..10 scale"):
        load_pairs(pair_file, scale=100)
    loaded = load_pairs(old_file, scale=100, strict=False)
    assert [p.vector for p in loaded.rows] == [Vector.neutral()]
    assert [n for n, _, _ in loaded.rejected] == [2]


def test_detect_format_rejects_unknown_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="neither a Pair"):
        detect_format(_write(tmp_path / "other.jsonl", [{"prompt": "x"}]))
    with pytest.raises(DataFileError, match="no valid JSON object"):
        detect_format(_write(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(DataFileError, match="file not found"):
        detect_format(tmp_path / "missing.jsonl")


def test_a_utf8_bom_at_the_start_is_no_part_of_the_first_line(tmp_path: Path) -> None:
    pair = Pair(group_id="g1", source_type="request_text", text="a bright jingle", vector=Vector.neutral())
    plain = tmp_path / "plain.jsonl"
    write_jsonl(plain, [pair])
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())  # as Windows editors save "UTF-8 with BOM"
    assert detect_format(bom) == "pair"
    assert load_pairs(bom).rows == [pair]
    old = tmp_path / "old-bom.jsonl"
    old.write_bytes(b"\xef\xbb\xbf" + json.dumps(_row("an old tune", [50] * 6)).encode() + b"\n")
    assert [p.text for p in import_file(old, scale=100).rows] == ["an old tune"]
    # Only at the start: a BOM inside a later line is still that line's problem.
    inner = tmp_path / "inner.jsonl"
    inner.write_bytes(plain.read_bytes() + b"\xef\xbb\xbf" + plain.read_bytes().replace(b"g1", b"g2"))
    with pytest.raises(DataFileError, match=r"inner.jsonl:2: invalid JSON"):
        load_pairs(inner)


def test_bad_lines_of_several_kinds_name_each_kind_with_counts_and_first_lines(tmp_path: Path) -> None:
    good = json.dumps(_row("fine", [50] * 6))
    rows = [good, *["{broken"] * 25, _row("x", [50] * 6, source_type="tweet"), "[1]", _row("y", [500] * 6)]
    path = _write(tmp_path / "mixed.jsonl", rows)
    with pytest.raises(DataFileError) as raised:
        import_file(path, scale=100)
    head = str(raised.value).splitlines()[0]
    assert head.startswith(f"{path}: 28 bad line(s): ")
    assert "invalid JSON: 25 lines (first lines 2, 3, 4)" in head
    assert "source_type: 1 line (line 27)" in head
    assert "expected a JSON object, got list: 1 line (line 28)" in head
    assert "target_hidden_params.vector: 1 line (line 29)" in head
    # A file with no valid line at all names its kinds, not "empty or unreadable".
    with pytest.raises(DataFileError, match=r"no valid JSON object line: invalid JSON: 2 lines \(lines 1, 2\)"):
        detect_format(_write(tmp_path / "all-bad.jsonl", ["{a", "{b"]))
