"""``kotone review``'s API: the live queue, storing reviews and their 4xx errors, the token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline.serving.review_app import create_review_app

TRAIN = [
    "a calm piano piece for a rainy afternoon",
    "an upbeat pop song for a summer festival",
    "a dark orchestral theme for the final boss",
    "a gentle acoustic guitar loop for a cafe",
    "energetic drum and bass for a racing game",
    "a nostalgic chiptune melody for the title screen",
]
TOKEN = "s3cret-review-token"


def logged(text: str, prediction: dict[str, int] | None = None, source_type: str = "request_text") -> dict[str, Any]:
    from kotone_pipeline.services.request_log import new_request_id

    return {
        "request_id": new_request_id(),
        "text": text,
        "source_type": source_type,
        "model_id": "champion-1",
        "prediction": prediction or dict.fromkeys(DIMS, 5),
        "latency_ms": 1.0,
    }


@contextmanager
def review_client(home: Path, **options: Any) -> Iterator[TestClient]:
    with TestClient(create_review_app(RequestLog(home), TRAIN, **options)) as client:
        yield client


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_queue_is_live_and_each_item_says_why(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    log.append([logged("a calm piano piece for a rainy afternoon"), logged("ein wilder Polka-Marsch mit Tuba")])
    with review_client(tmp_path) as client:
        first = client.get("/review/queue?limit=10").json()
        log.append([logged("a brand new request served a minute ago")])  # no cycle, no restart
        second = client.get("/review/queue?limit=10").json()
    assert first["total"] == 2 and second["total"] == 3
    item = first["items"][0]
    assert set(item) >= {"id", "text", "prediction", "reason"} and list(item["prediction"]) == list(DIMS)
    assert all(i["reason"] for i in first["items"])
    assert "a brand new request served a minute ago" in [i["text"] for i in second["items"]]


def test_the_queue_puts_unsure_unfamiliar_requests_first_and_paraphrases_apart(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    loud = {**dict.fromkeys(DIMS, 5), "energy": 10, "acousticness": 0}
    # The lexicon reads "calm piano" as quiet and acoustic: a champion saying loud and electronic is unsure.
    paraphrases = [logged(f"calm piano ballad for rainy night number {i}", loud) for i in range(8)]
    others = [logged(text, loud) for text in ("quiet harp lullaby", "soft acoustic guitar at dawn", "calm flute")]
    familiar = logged(TRAIN[0], {**dict.fromkeys(DIMS, 5)})
    log.append([*paraphrases, *others, familiar])
    with review_client(tmp_path) as client:
        items = client.get("/review/queue?limit=12").json()["items"]
    texts = [i["text"] for i in items]
    assert len(items) == 12
    assert texts[-1] == TRAIN[0] or texts.index(TRAIN[0]) > 3  # a training text the champion agrees on: last
    is_paraphrase = [t.startswith("calm piano ballad") for t in texts]
    # Never two paraphrases in a row while anything else is left.
    first_run = is_paraphrase[: 2 * len(others)]
    assert not any(a and b for a, b in zip(first_run, first_run[1:], strict=False))
    disagreeing = next(i for i in items if i["text"] == "quiet harp lullaby")
    assert "disagree" in disagreeing["reason"] and "lexicon reader" in disagreeing["reason"]


def test_reviews_are_stored_and_leave_the_queue(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    rows = [logged(f"request {i} with an organ") for i in range(4)]
    log.append(rows)
    labels = {**dict.fromkeys(DIMS, 2), "energy": 9}
    with review_client(tmp_path) as client:
        shown = client.get("/review/queue").json()["items"]
        label = client.post(f"/review/{rows[0]['request_id']}", json={"labels": labels, "reviewer": "ana"})
        second_reviewer = client.post(f"/review/{rows[0]['request_id']}", json={"labels": labels, "reviewer": "ben"})
        skip = client.post(f"/review/{rows[1]['request_id']}", json={"skip": True, "reviewer": "ana"})
        junk = client.post(f"/review/{rows[2]['request_id']}", json={"junk": True})
        for_ana = {i["id"] for i in client.get("/review/queue?reviewer=ana").json()["items"]}
        for_ben = {i["id"] for i in client.get("/review/queue?reviewer=ben").json()["items"]}
    assert len(shown) == 4
    assert label.status_code == 200, label.text
    stored = label.json()
    assert stored["request_id"] == rows[0]["request_id"] and stored["labels"] == labels
    assert stored["kind"] == "label" and stored["reviewer"] == "ana" and stored["model_id"] == "champion-1"
    assert stored["prediction_shown"] == rows[0]["prediction"] and stored["reason"]
    assert second_reviewer.status_code == 200  # two labels are agreement data
    assert skip.status_code == 200 and skip.json()["kind"] == "skip"
    assert junk.status_code == 200 and junk.json()["kind"] == "junk" and junk.json()["reviewer"] == "anonymous"
    # Labelled and junk leave everyone's queue; a skip only the skipper's.
    assert for_ana == {rows[3]["request_id"]}
    assert for_ben == {rows[1]["request_id"], rows[3]["request_id"]}
    reviews = log.reviews_between(0, 100)
    assert [(r.request_id, r.reviewer, r.kind) for r in reviews] == [
        (rows[0]["request_id"], "ana", "label"),
        (rows[0]["request_id"], "ben", "label"),
        (rows[1]["request_id"], "ana", "skip"),
        (rows[2]["request_id"], "anonymous", "junk"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"labels": {**dict.fromkeys(DIMS, 5), "energy": 11}, "reviewer": "ana"}, 422, "labels.energy"),
        ({"labels": {**dict.fromkeys(DIMS, 5), "energy": -1}, "reviewer": "ana"}, 422, "0..10"),
        ({"labels": {d: 5 for d in DIMS if d != "warmth"}, "reviewer": "ana"}, 422, "missing warmth"),
        ({"labels": {**dict.fromkeys(DIMS, 5), "tempo": 3}, "reviewer": "ana"}, 422, "unknown tempo"),
        ({"labels": {**dict.fromkeys(DIMS, 5), "energy": 4.5}, "reviewer": "ana"}, 422, "integer"),
        ({"labels": dict.fromkeys(DIMS, 5)}, 422, "reviewer"),
        ({"skip": True, "junk": True, "reviewer": "ana"}, 422, "exactly one"),
        ({"reviewer": "ana"}, 422, "exactly one"),
        ([1, 2], 422, "JSON object"),
    ],
)
def test_bad_reviews_are_json_422s(tmp_path: Path, body: Any, status: int, message: str) -> None:
    row = logged("a request")
    RequestLog(tmp_path).append([row])
    with review_client(tmp_path) as client:
        response = client.post(f"/review/{row['request_id']}", json=body)
    assert response.status_code == status and message in response.json()["error"], response.text
    assert RequestLog(tmp_path).reviews_between(0, 10) == []


def test_unknown_ids_twice_by_one_reviewer_and_bad_queries(tmp_path: Path) -> None:
    row = logged("a request")
    RequestLog(tmp_path).append([row])
    labels = dict.fromkeys(DIMS, 4)
    with review_client(tmp_path) as client:
        unknown = client.post("/review/req_does_not_exist", json={"labels": labels, "reviewer": "ana"})
        first = client.post(f"/review/{row['request_id']}", json={"labels": labels, "reviewer": "ana"})
        again = client.post(f"/review/{row['request_id']}", json={"skip": True, "reviewer": "ana"})
        bad_limit = client.get("/review/queue?limit=lots")
        zero_limit = client.get("/review/queue?limit=0")
        not_json = client.post(f"/review/{row['request_id']}", content=b"{nope")
    assert unknown.status_code == 404 and "req_does_not_exist" in unknown.json()["error"]
    assert first.status_code == 200
    assert again.status_code == 409 and "already reviewed" in again.json()["error"]
    assert bad_limit.status_code == 422 and zero_limit.status_code == 422
    assert not_json.status_code == 400 and "error" in not_json.json()


def test_with_a_token_every_api_call_needs_it(tmp_path: Path) -> None:
    row = logged("a request")
    RequestLog(tmp_path).append([row])
    labels = dict.fromkeys(DIMS, 4)
    with review_client(tmp_path, token=TOKEN) as client:
        page = client.get("/")
        no_token = client.get("/review/queue")
        wrong = client.get("/review/queue", headers=_auth("guess"))
        post_no_token = client.post(f"/review/{row['request_id']}", json={"labels": labels, "reviewer": "ana"})
        right = client.get("/review/queue", headers=_auth())
        post_right = client.post(
            f"/review/{row['request_id']}", json={"labels": labels, "reviewer": "ana"}, headers=_auth()
        )
    assert page.status_code == 200 and "Kotone review" in page.text and TOKEN not in page.text
    for refused in (no_token, wrong, post_no_token):
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200 and len(right.json()["items"]) == 1
    assert post_right.status_code == 200
    assert [r.reviewer for r in RequestLog(tmp_path).reviews_between(0, 10)] == ["ana"]  # only the authorised one


def test_a_big_backlog_is_scored_a_capped_slice_per_load(tmp_path: Path) -> None:
    RequestLog(tmp_path).append([logged(f"request number {i}") for i in range(30)])
    with review_client(tmp_path, warm=False, score_cap=10) as client:
        queue = client.app.state.queue  # type: ignore[attr-defined]
        first = client.get("/review/queue?limit=5").json()
        scored_after_first = len(queue._scored)
        client.get("/review/queue?limit=5")
    assert first["total"] == 30 and len(first["items"]) == 5
    assert scored_after_first == 10 and len(queue._scored) == 20
