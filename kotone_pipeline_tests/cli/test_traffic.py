"""The demo's simulated app and reviewer: a slice of traffic through a real `kotone serve`, the queue of a
real `kotone review` answered from a labels file; bad traffic or label files named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kotone_pipeline.cli.traffic import (
    REVIEWER,
    TrafficError,
    TrafficReplay,
    first_slice_size,
    read_labels,
    read_traffic,
)
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LocalHyperParams
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline_tests.serving.test_app import _fit, _promote

TEXTS = [f"a {mood} piece for a rainy evening, take {i}" for i, mood in enumerate(["calm", "loud", "soft", "busy"])]


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_slice_is_served_logged_and_reviewed_through_the_real_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kotone_home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(kotone_home))
    model = _fit(tmp_path / "model", "local:traffic", LocalHyperParams(use_encoder=False), kotone_home)
    _promote(kotone_home, model, "c1/r0")
    labels = {t.lower(): {**dict.fromkeys(DIMS, 4), "energy": i} for i, t in enumerate(TEXTS[:3])}
    replay = TrafficReplay(TEXTS, labels, slices=1)
    done = replay.run(kotone_home)
    assert done == {"served": 4, "reviewed": 3, "skipped": 1}
    log = RequestLog(kotone_home)
    assert sorted(r.text for r in log.requests_between(0, log.last_seq())) == sorted(TEXTS)
    reviews = log.reviews_between(0, log.last_seq("reviews"))
    assert {r.reviewer for r in reviews} == {REVIEWER}
    by_text = {log.request(r.request_id).text: r for r in reviews}  # type: ignore[union-attr]
    assert by_text[TEXTS[2]].labels == {**dict.fromkeys(DIMS, 4), "energy": 2}
    assert by_text[TEXTS[3]].kind == "skip"
    assert replay.run(kotone_home) == {"served": 0, "reviewed": 0, "skipped": 0}  # the traffic is used up


def test_bad_traffic_and_label_files_are_named_by_line(tmp_path: Path) -> None:
    traffic = _write(tmp_path / "t.jsonl", [{"text": "ok"}, "{broken", {"text": ""}])
    with pytest.raises(TrafficError, match=r"t\.jsonl:2: .*t\.jsonl:3: expected an object with a non-empty text"):
        read_traffic(traffic)
    labels = _write(tmp_path / "l.jsonl", [{"text": "x", "vector": {**dict.fromkeys(DIMS, 3), "energy": 11}}])
    with pytest.raises(TrafficError, match=r"l\.jsonl:1: expected text and six integer dims 0\.\.10"):
        read_labels(labels)
    good = _write(tmp_path / "g.jsonl", [{"text": "Calm  Piano", **dict.fromkeys(DIMS, 2)}])
    assert read_labels(good) == {"calm piano": dict.fromkeys(DIMS, 2)}


def test_the_first_slice_is_large_enough_for_the_field_set_to_decide() -> None:
    assert first_slice_size(150, 2, field_min_rows=30, field_share=1 / 3) == 100  # 1.2 x 30 / (1/3) = 108 -> 2/3 cap
    assert first_slice_size(600, 3, field_min_rows=30, field_share=1 / 3) == 200  # an even share is enough
    assert first_slice_size(150, 1, field_min_rows=30, field_share=1 / 3) is None
    replay = TrafficReplay([str(i) for i in range(150)], {}, slices=2, first_slice=100)
    assert [len(replay.next_slice()) for _ in range(3)] == [100, 50, 0]
