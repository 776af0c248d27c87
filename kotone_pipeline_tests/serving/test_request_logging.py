"""``kotone serve``'s request log: every answered item logged under concurrent clients, a locked log or a full
disk never fails a request (counted in /healthz), feedback stored beside the request."""

from __future__ import annotations

import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Vector
from kotone_pipeline.domain.model.predictor import Prediction, Predictor
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline.serving.app import create_app
from kotone_pipeline_tests.serving.test_app import _fit, _promote, _registry, _uvicorn

CLIENTS = 8
PER_CLIENT = 30


class _Echo(Predictor):
    """Energy = the text's length mod 11, the rest 0: each answer can be checked against its text."""

    def predict(self, inputs: Any) -> list[Prediction]:
        return [
            Prediction(vector=Vector.from_values([len(i.text) % 11, 0, 0, 0, 0, 0]), latency_ms=0.5) for i in inputs
        ]


@pytest.fixture(autouse=True)
def kotone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    return home


def _app(home: Path, log: RequestLog | None) -> Any:
    _promote(home, Path("/m/echo"), "echo-model")
    return create_app(_registry(home), loader=lambda champion: _Echo(), request_log=log)


def test_eight_concurrent_clients_lose_no_logged_request(kotone_home: Path) -> None:
    log = RequestLog(kotone_home)
    app = _app(kotone_home, log)
    answers: dict[str, tuple[str, dict[str, int]]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client(index: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for n in range(PER_CLIENT):
                text = f"client {index} request {n} " + "x" * n
                if n % 5 == 4:  # every fifth call a batch of two
                    body = {"items": [{"text": text, "id": 1}, {"text": text + " b", "source_type": "rule_prompt"}]}
                    response = http.post("/predict/batch", json=body)
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    with lock:
                        for sent, out in zip(body["items"], response.json()["predictions"], strict=True):
                            answers[out["request_id"]] = (sent["text"], out["prediction"])
                else:
                    response = http.post("/predict", json={"text": text})
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    with lock:
                        answers[response.json()["request_id"]] = (text, response.json()["prediction"])

    with _uvicorn(app) as url:
        threads = [threading.Thread(target=client, args=(i, url)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert app.state.log_writer.flush(timeout_s=30)
        health = httpx.get(f"{url}/healthz").json()["request_log"]
    assert failures == []
    expected = CLIENTS * (PER_CLIENT + PER_CLIENT // 5)  # a batch answers two items
    assert len(answers) == expected  # every answer got its own request id
    rows = RequestLog(kotone_home).requests_between(0, 10**9)
    assert len(rows) == expected
    assert {r.request_id: (r.text, r.prediction) for r in rows} == answers
    assert {r.model_id for r in rows} == {"echo-model"}
    assert all(r.at.endswith("+00:00") and r.latency_ms == 0.5 for r in rows)
    assert {r.source_type for r in rows} == {"request_text", "rule_prompt"}
    assert health == {"enabled": True, "logged": expected, "not_logged": 0, "pending": 0, "last_error": None}


def test_a_locked_log_answers_every_request_and_counts_them_not_logged(kotone_home: Path) -> None:
    log = RequestLog(kotone_home)
    log.append([])  # creates the file
    blocker = sqlite3.connect(log.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the log past the writer's busy timeout
    try:
        with TestClient(_app(kotone_home, log)) as client:
            answers = [client.post("/predict", json={"text": f"locked {i}"}) for i in range(5)]
            assert client.app.state.log_writer.flush(timeout_s=30)  # type: ignore[attr-defined]
            during = client.get("/healthz").json()["request_log"]
            blocker.execute("ROLLBACK")
            after = client.post("/predict", json={"text": "unlocked"})
            assert client.app.state.log_writer.flush(timeout_s=30)  # type: ignore[attr-defined]
            healed = client.get("/healthz").json()["request_log"]
    finally:
        blocker.close()
    assert [a.status_code for a in answers] == [200] * 5
    assert during["not_logged"] == 5 and during["logged"] == 0 and "locked" in during["last_error"]
    assert after.status_code == 200 and healed["logged"] == 1
    assert [r.text for r in RequestLog(kotone_home).requests_between(0, 100)] == ["unlocked"]


def _limit_file_size(limit: int) -> Any:
    def apply() -> None:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG: what a full disk looks like to SQLite.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_kotone_serve_on_a_full_disk_keeps_answering(kotone_home: Path, tmp_path: Path) -> None:
    model = _fit(tmp_path / "model", "local:full-disk", LocalHyperParams(use_encoder=False), kotone_home)
    _promote(kotone_home, model, "full-disk-model")
    RequestLog(kotone_home).append(
        [
            {
                "request_id": "req_first",
                "text": "logged",
                "source_type": "request_text",
                "model_id": "m",
                "prediction": dict.fromkeys(DIMS, 5),
                "latency_ms": 1.0,
            }
        ]  # fmt: skip
    )
    limit = max(f.stat().st_size for f in (kotone_home / "requests").iterdir()) + 4096
    command = [sys.executable, "-c", "from kotone_pipeline.cli import main; main()", "serve", "--port", "0"]
    process = subprocess.Popen(
        command,
        env={**os.environ, "KOTONE_HOME": str(kotone_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_file_size(limit),  # noqa: PLW1509 - only setrlimit, no locks taken
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r" on (http://\S+)", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        url = match.group(1)
        texts = [f"request {i} " + "long " * 2000 for i in range(20)]  # 10 KB each: the log outgrows the limit
        statuses = [httpx.post(f"{url}/predict", json={"text": t}, timeout=30).status_code for t in texts]
        health: dict[str, Any] = {}
        for _ in range(100):  # the writer thread may still be on the last batch
            health = httpx.get(f"{url}/healthz", timeout=30).json()["request_log"]
            if health["pending"] == 0:
                break
            threading.Event().wait(0.05)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert statuses == [200] * len(texts)
    assert health["enabled"] is True and health["not_logged"] > 0
    assert health["logged"] + health["not_logged"] == len(texts)
    assert "Error" in health["last_error"] or "full" in health["last_error"]


def test_feedback_is_stored_beside_the_request(kotone_home: Path) -> None:
    log = RequestLog(kotone_home)
    with TestClient(_app(kotone_home, log)) as client:
        request_id = client.post("/predict", json={"text": "a rainy-day piano piece"}).json()["request_id"]
        labels = dict.fromkeys(DIMS, 3)
        # At once: the request may still be queued for the log; feedback waits for it.
        stored = client.post("/feedback", json={"request_id": request_id, "labels": labels, "comment": "calmer"})
        comment_only = client.post("/feedback", json={"request_id": request_id, "comment": "nice"})
        unknown = client.post("/feedback", json={"request_id": "req_nope", "comment": "?"})
        out_of_range = client.post("/feedback", json={"request_id": request_id, "labels": {**labels, "energy": 11}})
        missing_dim = client.post("/feedback", json={"request_id": request_id, "labels": {"energy": 3}})
        nothing = client.post("/feedback", json={"request_id": request_id})
        not_json = client.post("/feedback", content=b"{")
    assert stored.status_code == 200, stored.text
    assert stored.json()["labels"] == labels and stored.json()["comment"] == "calmer"
    assert comment_only.status_code == 200
    assert unknown.status_code == 404 and "req_nope" in unknown.json()["error"]
    assert out_of_range.status_code == 422 and "energy" in out_of_range.json()["error"]
    assert missing_dim.status_code == 422 and "missing" in missing_dim.json()["error"]
    assert nothing.status_code == 422 and not_json.status_code == 400
    kept = RequestLog(kotone_home).feedback_between(0, 100)
    assert [(f.request_id, f.labels, f.comment) for f in kept] == [
        (request_id, labels, "calmer"),
        (request_id, None, "nice"),
    ]


def test_without_a_log_nothing_is_logged_and_answers_say_so(kotone_home: Path) -> None:
    with TestClient(_app(kotone_home, None)) as client:
        answer = client.post("/predict", json={"text": "a tune"}).json()
        batch = client.post("/predict/batch", json={"items": [{"text": "a tune"}]}).json()
        health = client.get("/healthz").json()
        feedback = client.post("/feedback", json={"request_id": "req_x", "comment": "?"})
    assert answer["request_id"] is None and batch["predictions"][0]["request_id"] is None
    assert health["request_log"] == {"enabled": False}
    assert feedback.status_code == 404 and "off" in feedback.json()["error"]
    assert not (kotone_home / "requests").exists()


def test_the_openapi_document_describes_request_ids_and_feedback(kotone_home: Path) -> None:
    with TestClient(_app(kotone_home, None)) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs").text
    assert "/feedback" in spec["paths"] and "/feedback" in docs
    assert "request_id" in spec["components"]["schemas"]["PredictResponse"]["properties"]
    assert "request_log" in spec["components"]["schemas"]["Health"]["properties"]
    assert json.dumps(spec)  # serialisable as served
