"""``kotone review``: import / export round trip, bad import lines, and refusing a public host without a token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app as cli_app
from kotone_pipeline.cli.review import is_local
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.services.request_log import RequestLog

runner = CliRunner()


@pytest.fixture(autouse=True)
def kotone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    monkeypatch.delenv("KOTONE_REVIEW_TOKEN", raising=False)
    return home


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def _labels(energy: int) -> dict[str, int]:
    return {**dict.fromkeys(DIMS, 4), "energy": energy}


def test_import_then_export_round_trips_into_a_fresh_home(
    kotone_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RequestLog(kotone_home)
    log.append(
        [
            {
                "request_id": "req_logged1",
                "text": "a logged request",
                "source_type": "request_text",
                "model_id": "champion-1",
                "prediction": _labels(5),
                "latency_ms": 2.0,
            }
        ]  # fmt: skip
    )
    source = _write(
        tmp_path / "labels.jsonl",
        [
            {"request_id": "req_logged1", "labels": _labels(8), "reviewer": "ana"},
            {"text": "a logged request", **_labels(7), "reviewer": "ben"},  # by text, dims at the top level
            {"text": "雨の日のピアノ曲", "labels": _labels(2), "reviewer": "ana"},  # not in the log: added
            {"text": "buy cheap watches", "kind": "junk", "reviewer": "ana"},
        ],
    )
    imported = runner.invoke(cli_app, ["review", "import", str(source)])
    assert imported.exit_code == 0, imported.output
    assert "imported 4 review(s) (2 new request(s)" in imported.output
    exported = runner.invoke(cli_app, ["review", "export", "--out", str(tmp_path / "out.jsonl")])
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["text"], r["reviewer"], r["kind"], r["labels"]) for r in rows] == [
        ("a logged request", "ana", "label", _labels(8)),
        ("a logged request", "ben", "label", _labels(7)),
        ("雨の日のピアノ曲", "ana", "label", _labels(2)),
        ("buy cheap watches", "ana", "junk", None),
    ]
    assert rows[0]["request_id"] == rows[1]["request_id"] == "req_logged1"
    assert rows[0]["prediction_shown"] == _labels(5) and rows[0]["model_id"] == "champion-1"
    added = RequestLog(kotone_home).request(rows[2]["request_id"])
    assert added is not None and added.model_id == "imported"

    # The export imports into another home as it was, and exports the same again.
    other = tmp_path / "other_home"
    monkeypatch.setenv("KOTONE_HOME", str(other))
    again = runner.invoke(cli_app, ["review", "import", str(tmp_path / "out.jsonl")])
    assert again.exit_code == 0, again.output
    second = runner.invoke(cli_app, ["review", "export"])
    assert second.exit_code == 0, second.output
    second_rows = [json.loads(line) for line in second.stdout.splitlines()]
    keys = ("request_id", "text", "source_type", "reviewer", "kind", "labels", "at")
    assert [{k: r[k] for k in keys} for r in second_rows] == [{k: r[k] for k in keys} for r in rows]


def test_bad_lines_are_reported_by_line_and_nothing_is_written(kotone_home: Path, tmp_path: Path) -> None:
    source = _write(
        tmp_path / "bad.jsonl",
        [
            {"text": "fine", "labels": _labels(3), "reviewer": "ana"},
            "{not json",
            {"text": "too loud", "labels": _labels(11), "reviewer": "ana"},
            {"text": "no one", "labels": _labels(3)},
            {"request_id": "req_unknown", "labels": _labels(3), "reviewer": "ana"},
            {"text": "missing", "labels": {"energy": 3}, "reviewer": "ana"},
            {"text": "fine", "labels": _labels(4), "reviewer": "ana"},  # ana twice on one request
        ],
    )
    result = runner.invoke(cli_app, ["review", "import", str(source)])
    assert result.exit_code == 2
    err = result.stderr
    assert err.startswith("error: nothing imported")
    for line, reason in [
        (2, "invalid JSON"),
        (3, "labels.energy"),
        (4, "reviewer"),
        (5, "req_unknown"),
        (6, "missing"),
        (7, "already reviews this request on line 1"),
    ]:
        assert f"{source}:{line}: " in err and reason in err.split(f"{source}:{line}: ")[1].splitlines()[0]
    assert f"{source}:1:" not in err
    assert "Traceback" not in result.output
    assert RequestLog(kotone_home).count() == 0 and RequestLog(kotone_home).count("reviews") == 0


def test_importing_a_review_the_log_already_has_writes_nothing(kotone_home: Path, tmp_path: Path) -> None:
    first = _write(tmp_path / "a.jsonl", [{"text": "one", "labels": _labels(3), "reviewer": "ana"}])
    assert runner.invoke(cli_app, ["review", "import", str(first)]).exit_code == 0
    second = _write(
        tmp_path / "b.jsonl",
        [
            {"text": "two", "labels": _labels(3), "reviewer": "ana"},
            {"text": "one", "labels": _labels(5), "reviewer": "ana"},
        ],
    )
    result = runner.invoke(cli_app, ["review", "import", str(second)])
    assert result.exit_code == 2 and f"{second}:2: ana already reviewed" in result.stderr
    assert [r.text for r in RequestLog(kotone_home).requests_between(0, 100)] == ["one"]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(cli_app, ["review", "import", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: not found"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.org", "::"])
def test_a_public_host_without_a_token_is_refused(host: str) -> None:
    result = runner.invoke(cli_app, ["review", "--host", host, "--port", "0"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: refusing to listen on {host} without a token")
    assert len(result.stderr.strip().splitlines()) == 1


def test_which_hosts_count_as_local() -> None:
    assert all(is_local(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"))
    assert not any(is_local(h) for h in ("0.0.0.0", "10.0.0.1", "example.org", "::"))


def test_help_explains_the_commands() -> None:
    for args, words in [
        (["review", "--help"], ["/review/queue", "KOTONE_REVIEW_TOKEN", "Enter saves", "import", "export"]),
        (["review", "import", "--help"], ["request_id", "FILE:LINE", "imported"]),
        (["review", "export", "--help"], ["prediction_shown", "--out"]),
        (["serve", "--help"], ["--no-log", "KOTONE_REQUEST_LOG", "/feedback", "not_logged"]),
    ]:
        result = runner.invoke(cli_app, args, terminal_width=120)
        assert result.exit_code == 0
        for word in words:
            assert word in result.output, (args, word)
