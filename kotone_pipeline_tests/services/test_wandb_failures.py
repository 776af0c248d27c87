"""Failure rows from W&B: a stand-in for the public API for the answered path; the real wandb client
against a closed local port for the unreachable path."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wandb

from kotone_pipeline.domain.data.jsonl import DataFileError
from kotone_pipeline.domain.data.schemas import FailureExample, Vector
from kotone_pipeline.services.tracker import TrackerUnavailableError
from kotone_pipeline.services.tracker_tables import TOP_FAILURES_TABLE, failures_table
from kotone_pipeline.services.wandb_failures import (
    FailureTableNotFoundError,
    failures_from_table,
    fetch_failures,
    snapshot_path,
)

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
FAILURES = [
    FailureExample(
        pair_id="p_1",
        source_type="request_text",
        text="a frantic, icy cue",
        target=Vector.from_values([9, 2, 5, 5, 5, 5]),
        prediction=Vector.from_values([5, 5, 5, 5, 5, 5]),
        row_mae=7 / 6,
    ),
    FailureExample(
        pair_id="p_2",
        source_type="rule_prompt",
        text="style: Retro Pop (st_a)\nmood: Wistful (mo_a)",
        target=Vector.from_values([7, 3, 5, 5, 5, 8]),
        prediction=Vector.from_values([5, 3, 5, 5, 5, 5]),
        row_mae=5 / 6,
    ),
]


class StandInApi:
    """The part of ``wandb.Api`` that fetch_failures uses: ``runs`` (newest first) and ``artifact``."""

    def __init__(self, runs: list[SimpleNamespace], tables: dict[str, Any]) -> None:
        self._runs = runs
        self._tables = tables
        self.calls: list[tuple[Any, ...]] = []

    def runs(self, path: str, filters: dict[str, Any], order: str, per_page: int) -> list[SimpleNamespace]:
        self.calls.append(("runs", path, filters, order))
        return [r for r in self._runs if r.job_type == filters.get("jobType")]

    def artifact(self, name: str) -> SimpleNamespace:
        self.calls.append(("artifact", name))
        table = self._tables[name]
        return SimpleNamespace(get=lambda key: table if key == TOP_FAILURES_TABLE else None)


def _run(run_id: str, job_type: str = "eval", with_table: bool = True) -> SimpleNamespace:
    summary = {"eval/vector_mae": 1.2}
    if with_table:
        summary[TOP_FAILURES_TABLE] = {"_type": "table-file", "nrows": 2}
    return SimpleNamespace(
        id=run_id, name=f"eval-{run_id}", entity="team", project="kotone", job_type=job_type, summary=summary
    )


def _api() -> StandInApi:
    # Newest first: a training run, an eval run that logged no failure table, then the one we want.
    runs = [_run("r9", job_type="train"), _run("r8", with_table=False), _run("r7"), _run("r6")]
    table = wandb.Table(dataframe=failures_table(FAILURES))
    return StandInApi(runs, {f"team/kotone/run-r7-{TOP_FAILURES_TABLE}:latest": table})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_failure_table_round_trips_through_a_wandb_table() -> None:
    table = wandb.Table(dataframe=failures_table(FAILURES))
    assert failures_from_table(table) == FAILURES


def test_failure_table_rows_come_back_in_rank_order() -> None:
    frame = failures_table(FAILURES).iloc[::-1]
    assert [f.pair_id for f in failures_from_table(wandb.Table(dataframe=frame))] == ["p_1", "p_2"]


def test_failure_table_with_bad_content_names_the_problem() -> None:
    frame = failures_table(FAILURES)
    with pytest.raises(ValueError, match="lacks column.*pred_energy"):
        failures_from_table(wandb.Table(dataframe=frame.drop(columns=["pred_energy"])))
    frame.loc[1, "target_warmth"] = 14
    with pytest.raises(ValueError, match="failure table row 2: .*warmth.*out of range"):
        failures_from_table(wandb.Table(dataframe=frame))


def test_fetch_takes_the_newest_eval_run_with_a_table_and_saves_a_snapshot(tmp_path: Path) -> None:
    api = _api()
    result = fetch_failures("kotone", tmp_path, entity="team", api_factory=lambda: api, clock=lambda: T0)
    assert result.run_id == "r7" and result.rows == FAILURES
    assert (result.stale, result.snapshot_age_s, result.fetched_at) == (False, None, T0.isoformat())
    assert api.calls == [
        ("runs", "team/kotone", {"jobType": "eval"}, "-created_at"),
        ("artifact", f"team/kotone/run-r7-{TOP_FAILURES_TABLE}:latest"),
    ]
    snap = json.loads(snapshot_path(tmp_path, "kotone").read_text())
    assert snap["run_id"] == "r7" and snap["fetched_at"] == T0.isoformat() and len(snap["rows"]) == 2
    assert result.as_metadata()["wandb_failures_stale"] is False


def test_fetch_without_any_failure_table_says_so(tmp_path: Path) -> None:
    api = StandInApi([_run("r8", with_table=False)], {})
    with pytest.raises(FailureTableNotFoundError, match="no 'eval' run among the last 20 of kotone"):
        fetch_failures("kotone", tmp_path, api_factory=lambda: api)
    assert not snapshot_path(tmp_path, "kotone").exists()


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", "wandbfakekey0123456789abcdef0123456789abcdef")
    return f"http://127.0.0.1:{_closed_port()}"


def test_unreachable_wandb_fails_clearly(tmp_path: Path, unreachable: str) -> None:
    fetch_failures("kotone", tmp_path, entity="team", api_factory=lambda: _api(), clock=lambda: T0)
    before = snapshot_path(tmp_path, "kotone").read_bytes()
    with pytest.raises(TrackerUnavailableError) as info:
        fetch_failures("kotone", tmp_path, entity="team", host=unreachable, timeout_s=2)
    message = str(info.value)
    assert message.startswith(f"W&B unreachable at {unreachable}: ")
    assert message.endswith("; set allow_stale to use the last snapshot")
    # a snapshot exists, but nothing falls back to it unless asked
    assert snapshot_path(tmp_path, "kotone").read_bytes() == before


def test_unreachable_wandb_with_allow_stale_uses_the_snapshot_and_says_how_old(
    tmp_path: Path, unreachable: str
) -> None:
    fetch_failures("kotone", tmp_path, entity="team", api_factory=lambda: _api(), clock=lambda: T0)
    later = T0 + timedelta(hours=26)
    result = fetch_failures(
        "kotone",
        tmp_path,
        entity="team",
        host=unreachable,
        timeout_s=2,
        allow_stale=True,
        clock=lambda: later,
    )
    assert result.stale is True
    assert result.snapshot_age_s == pytest.approx(26 * 3600)
    assert result.fetched_at == T0.isoformat()  # the snapshot's time, not now
    assert result.run_id == "r7" and result.rows == FAILURES
    meta = result.as_metadata()
    assert meta["wandb_failures_stale"] is True and meta["wandb_failures_snapshot_age_s"] == 93600.0


def test_allow_stale_without_snapshot_still_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(TrackerUnavailableError) as info:
        fetch_failures("kotone", tmp_path, host="http://wandb.internal", allow_stale=True)
    assert str(info.value) == (
        "W&B unreachable at http://wandb.internal: WANDB_API_KEY is not set; "
        f"no snapshot to fall back on at {tmp_path / 'wandb_failures' / 'kotone.json'}"
    )


def test_corrupt_snapshot_is_reported_with_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    snap = snapshot_path(tmp_path, "kotone")
    snap.parent.mkdir(parents=True)
    snap.write_text('{"rows": [], "run_id": "r1"}')
    with pytest.raises(DataFileError, match=rf"{snap}: unreadable W&B failure snapshot"):
        fetch_failures("kotone", tmp_path, allow_stale=True)


def test_project_name_cannot_escape_the_snapshot_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid W&B project name"):
        snapshot_path(tmp_path, "../etc/passwd")
