"""``kotone serve``: the API's answers and errors, reloading a new champion with no failed request, the command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kotone_pipeline.cli import app as cli_app
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair, Vector
from kotone_pipeline.domain.model.local_model import ESTIMATOR_FILE, LocalTextModel
from kotone_pipeline.domain.model.predictor import PredictInput, Prediction, Predictor
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.serving.app import NO_CHAMPION, create_app
from kotone_pipeline.serving.champion_holder import ChampionHolder
from kotone_pipeline.serving.openapi import openapi_document

runner = CliRunner()

_CUES = {1: "whispering", 5: "walking-pace", 9: "stomping"}
REQUEST = "a stomping piece for the night drive"
RULE = "style: stomping techno; instrument: drums"
FAST_CHECK_S = 0.05


def _pairs(n: int, prefix: str, other: int) -> list[Pair]:
    """Energy (1, 5 or 9) readable from a cue word; the other dims fixed at ``other``; both source types."""
    levels = list(_CUES)
    return [
        Pair(
            group_id=f"{prefix}{i}",
            source_type="request_text" if i % 2 else "rule_prompt",
            text=f"a {_CUES[levels[i % 3]]} piece, take {prefix}{i}",
            vector=Vector.from_values([levels[i % 3], other, other, other, other, other]),
        )
        for i in range(n)
    ]


def _fit(out: Path, model_id: str, hparams: LocalHyperParams, home: Path, other: int = 3) -> Path:
    # The encoder caches embeddings under KOTONE_HOME: keep that inside the test's temporary folder.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOTONE_HOME", str(home))
        LocalTextModel(model_id=model_id).fit(_pairs(48, "t", other), hparams).save(out)
    return out


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve_fast")
    return _fit(root / "model", "local:fast", LocalHyperParams(use_encoder=False), root / "home")


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve_second")
    return _fit(root / "model", "local:second", LocalHyperParams(use_encoder=False), root / "home", other=7)


@pytest.fixture(scope="module")
def encoder_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve_encoder")
    return _fit(root / "model", "local:encoder", LocalHyperParams(), root / "home")


@pytest.fixture(autouse=True)
def kotone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty KOTONE_HOME per test: no champion unless the test promotes one."""
    home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    return home


def _registry(home: Path) -> ChampionRegistry:
    # The same registry location `kotone predict` and `kotone status` read.
    return ChampionRegistry(CycleArtifacts(home).registry_dir)


def _promote(home: Path, model_dir: Path, model_id: str, decision: str = "decision-1", **fields: Any) -> Champion:
    champion = Champion(
        model_id=model_id,
        model_uri=str(model_dir),
        cycle_id="cycle-007",
        run_id="run-1",
        holdout_mae=0.3,
        decision_reason="beats the baselines",
        **fields,
    )
    assert _registry(home).promote(champion, decision)
    current = _registry(home).current()
    assert current is not None
    return current


@contextmanager
def _client(home: Path, **options: Any) -> Iterator[TestClient]:
    options.setdefault("check_interval_s", FAST_CHECK_S)
    with TestClient(create_app(_registry(home), **options)) as client:
        yield client


def _expected(model_dir: Path, text: str, source_type: str = "request_text") -> dict[str, int]:
    [prediction] = LocalTextModel.load(model_dir).predict([PredictInput(text=text, source_type=source_type)])
    assert prediction.vector is not None
    return prediction.vector.as_dict()


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        time.sleep(0.02)


# --- answers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source_type", ["request_text", "rule_prompt"])
def test_predict_matches_kotone_predict_json(encoder_model: Path, kotone_home: Path, source_type: str) -> None:
    # Default hyper-parameters: the sentence encoder is in the served model too.
    _promote(kotone_home, encoder_model, "cycle-007-local")
    text = REQUEST if source_type == "request_text" else RULE
    cli = runner.invoke(cli_app, ["predict", text, "--json", "--source-type", source_type])
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    with _client(kotone_home) as client:
        response = client.post("/predict", json={"text": text, "source_type": source_type})
    assert response.status_code == 200, response.text
    out = response.json()
    assert set(out) == {"request_id", "model_id", "prediction", "latency_ms", "source_type"}
    assert out["request_id"] is None  # no request log given to create_app
    assert {k: out[k] for k in ("model_id", "prediction", "source_type")} == {
        k: expected[k] for k in ("model_id", "prediction", "source_type")
    }
    assert list(out["prediction"]) == list(DIMS)
    assert out["latency_ms"] >= 0


def test_source_type_defaults_to_request_text(fast_model: Path, kotone_home: Path) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    with _client(kotone_home) as client:
        out = client.post("/predict", json={"text": REQUEST, "extra": "ignored"}).json()
    assert out["source_type"] == "request_text"
    assert out["prediction"] == _expected(fast_model, REQUEST)


def test_batch_keeps_order_and_ids(fast_model: Path, kotone_home: Path) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    items = [
        {"text": REQUEST, "id": "a"},
        {"text": RULE, "source_type": "rule_prompt", "id": 7},
        {"text": "a whispering lullaby"},
        {"text": "a walking-pace stroll", "id": None},
        {"text": REQUEST, "id": {"nested": [1, 2]}},
    ]
    with _client(kotone_home) as client:
        response = client.post("/predict/batch", json={"items": items})
        empty = client.post("/predict/batch", json={"items": []})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_id"] == "cycle-007-local" and out["latency_ms"] >= 0
    assert out["predictions"] == [
        {"id": "a", "request_id": None, "prediction": _expected(fast_model, REQUEST)},
        {"id": 7, "request_id": None, "prediction": _expected(fast_model, RULE, "rule_prompt")},
        {"request_id": None, "prediction": _expected(fast_model, "a whispering lullaby")},
        {"id": None, "request_id": None, "prediction": _expected(fast_model, "a walking-pace stroll")},
        {"id": {"nested": [1, 2]}, "request_id": None, "prediction": _expected(fast_model, REQUEST)},
    ]
    assert empty.status_code == 200 and empty.json()["predictions"] == []


def test_model_describes_the_served_champion(fast_model: Path, kotone_home: Path) -> None:
    promoted = _promote(kotone_home, fast_model, "cycle-007-local", human_mae=0.41, per_dim_mae={"energy": 0.2})
    with _client(kotone_home) as client:
        response = client.get("/model")
    assert response.status_code == 200
    out = response.json()
    assert out["model_id"] == "cycle-007-local"
    assert out["model_uri"] == str(fast_model)
    assert out["cycle_id"] == "cycle-007" and out["run_id"] == "run-1"
    assert out["promoted_at"] == promoted.promoted_at
    assert out["holdout_mae"] == 0.3 and out["human_mae"] == 0.41
    assert out["per_dim_mae"] == {"energy": 0.2}
    assert out["decision_id"] == "decision-1" and out["loaded_at"]


def test_healthz_without_then_with_a_champion(fast_model: Path, kotone_home: Path) -> None:
    with _client(kotone_home) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "no_champion" and health.json()["model_id"] is None
        model = client.get("/model")
        assert model.status_code == 404 and model.json() == {"error": NO_CHAMPION}
        predict = client.post("/predict", json={"text": REQUEST})
        assert predict.status_code == 503 and predict.json() == {"error": NO_CHAMPION}
        batch = client.post("/predict/batch", json={"items": [{"text": REQUEST}]})
        assert batch.status_code == 503 and "no champion" in batch.json()["error"]

        promoted = _promote(kotone_home, fast_model, "cycle-007-local")  # picked up without a restart
        _wait_for(lambda: client.get("/healthz").status_code == 200)
        out = client.get("/healthz").json()
        assert out["status"] == "ok" and out["model_id"] == "cycle-007-local" and out["error"] is None
        assert out["promoted_at"] == promoted.promoted_at
        assert client.post("/predict", json={"text": REQUEST}).json()["model_id"] == "cycle-007-local"
        counted = client.get("/healthz").json()
        assert counted["texts_predicted"] == out["texts_predicted"] + 1
        assert counted["model_calls"] == out["model_calls"] + 1


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{oops", 400, "invalid JSON"),
        (b"", 400, "empty request body"),
        (b"\xff\xfe{", 400, "invalid JSON"),
        (b"[1, 2]", 422, "expected a JSON object, got array"),
        (b"{}", 422, "missing text"),
        (b'{"text": ""}', 422, "empty text"),
        (b'{"text": "   \\n"}', 422, "empty text"),
        (b'{"text": 5}', 422, "text must be a string, got number"),
        (b'{"text": null}', 422, "text must be a string, got null"),
        (b'{"text": "x", "source_type": "tweet"}', 422, "unknown source_type 'tweet'"),
    ],
)
def test_bad_predict_bodies(fast_model: Path, kotone_home: Path, body: bytes, status: int, message: str) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    with _client(kotone_home) as client:
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"} and message in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"text": REQUEST}], "expected a JSON object"),
        ({}, "missing items"),
        ({"items": {"text": REQUEST}}, "items must be an array, got object"),
        ({"items": [{"text": REQUEST}, {"text": " "}]}, "items[1]: empty text"),
        ({"items": [{"text": REQUEST}, "text"]}, "items[1]: expected a JSON object, got string"),
        ({"items": [{"text": REQUEST, "source_type": "tweet"}]}, "items[0]: unknown source_type"),
        ({"items": [{"text": REQUEST}] * 5}, "too many items: 5 (at most 4 per request)"),
    ],
)
def test_bad_batch_bodies_are_422(fast_model: Path, kotone_home: Path, body: Any, message: str) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    with _client(kotone_home, max_batch=4) as client:
        response = client.post("/predict/batch", json=body)
    assert response.status_code == 422
    assert response.json() == {"error": response.json()["error"]} and message in response.json()["error"]


def test_bodies_over_the_limit_are_413(fast_model: Path, kotone_home: Path) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    big = json.dumps({"text": "x" * 2000}).encode()
    with _client(kotone_home, max_body_bytes=1000) as client:
        declared = client.post("/predict", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413
        assert declared.json() == {"error": f"request body too large: {len(big)} bytes (at most 1000)"}
        # No Content-Length (chunked): the streamed body is cut off at the limit.
        streamed = client.post("/predict/batch", content=iter([big[:600], big[600:]]))
        assert streamed.status_code == 413
        assert streamed.json() == {"error": "request body too large: over 1000 bytes"}
        ok = client.post("/predict", json={"text": REQUEST})
        assert ok.status_code == 200


def test_wrong_method_and_unknown_path_are_json(fast_model: Path, kotone_home: Path) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    with _client(kotone_home) as client:
        for method, path in [("GET", "/predict"), ("GET", "/predict/batch"), ("POST", "/healthz"), ("PUT", "/model")]:
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert "error" in response.json() and "allow" in response.headers
        missing = client.get("/nowhere")
    assert missing.status_code == 404 and "error" in missing.json()


def test_openapi_and_a_self_contained_docs_page(kotone_home: Path) -> None:
    with _client(kotone_home) as client:
        spec = client.get("/openapi.json")
        docs = client.get("/docs")
        root = client.get("/", follow_redirects=False)
    assert spec.status_code == 200 and spec.json() == json.loads(json.dumps(openapi_document()))
    assert spec.json()["openapi"].startswith("3.")
    assert set(spec.json()["paths"]) >= {"/predict", "/predict/batch", "/healthz", "/model"}
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for path in ("/predict", "/predict/batch", "/healthz", "/model", "/openapi.json"):
        assert path in docs.text
    assert "src=" not in docs.text and "https://" not in docs.text and "http://" not in docs.text
    assert root.status_code in (302, 307) and root.headers["location"] == "/docs"


# --- reloading ----------------------------------------------------------------------------------------------


def _corrupt(model_dir: Path, into: Path) -> Path:
    broken = Path(shutil.copytree(model_dir, into))
    (broken / ESTIMATOR_FILE).write_bytes(b"not a joblib file")
    return broken


def test_a_champion_that_cannot_load_keeps_the_old_one_serving(
    fast_model: Path, tmp_path: Path, kotone_home: Path
) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    with _client(kotone_home) as client:
        assert client.post("/predict", json={"text": REQUEST}).status_code == 200
        _promote(kotone_home, _corrupt(fast_model, tmp_path / "broken"), "cycle-009-local", "decision-2")
        _wait_for(lambda: client.get("/healthz").json()["status"] == "degraded")
        health = client.get("/healthz")
        assert health.status_code == 200
        out = health.json()
        assert out["model_id"] == "cycle-007-local"
        assert "cannot load the champion cycle-009-local" in out["error"] and "corrupt estimator" in out["error"]
        predicted = client.post("/predict", json={"text": REQUEST})
        assert predicted.status_code == 200 and predicted.json()["model_id"] == "cycle-007-local"
        assert client.get("/model").json()["model_id"] == "cycle-007-local"


def test_a_broken_champion_at_startup_is_503_with_the_reason(
    fast_model: Path, tmp_path: Path, kotone_home: Path
) -> None:
    _promote(kotone_home, _corrupt(fast_model, tmp_path / "broken"), "cycle-009-local")
    with _client(kotone_home) as client:
        health = client.get("/healthz")
        predict = client.post("/predict", json={"text": REQUEST})
    assert health.status_code == 503 and health.json()["status"] == "no_champion"
    assert "cycle-009-local" in health.json()["error"]
    assert predict.status_code == 503 and "cannot load the champion cycle-009-local" in predict.json()["error"]


class _Fixed(Predictor):
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def predict(self, inputs: Any) -> list[Prediction]:
        return [Prediction(vector=Vector.from_values([5] * 6)) for _ in inputs]


def test_the_holder_checks_cheaply_and_does_not_retry_a_failed_load_at_once(kotone_home: Path) -> None:
    registry = _registry(kotone_home)
    now = [100.0]
    loads: list[str] = []

    def loader(champion: Champion) -> Predictor:
        loads.append(champion.model_id)
        if champion.model_id == "bad":
            raise ValueError("broken")
        return _Fixed(champion.model_id)

    holder = ChampionHolder(registry, check_interval_s=1.0, loader=loader, clock=lambda: now[0])
    holder.start()
    assert holder.served is None and holder.health()["status"] == "no_champion"
    _promote(kotone_home, Path("/m/good"), "good")
    holder.refresh(wait=True)  # within the interval: nothing looked at
    assert holder.served is None
    now[0] += 1.0
    holder.refresh(wait=True)
    assert holder.served is not None and holder.served.champion.model_id == "good" and loads == ["good"]
    for _ in range(3):  # the file did not change: no reload
        now[0] += 1.0
        holder.refresh(wait=True)
    assert loads == ["good"]
    _promote(kotone_home, Path("/m/bad"), "bad", "decision-2")
    now[0] += 1.0
    holder.refresh(wait=True)
    assert loads == ["good", "bad"] and holder.health()["status"] == "degraded"
    assert holder.served.champion.model_id == "good"
    now[0] += 5.0
    holder.refresh(wait=True)
    assert loads == ["good", "bad"]  # the failure is retried later, not on every check
    now[0] += 60.0
    holder.refresh(wait=True)
    assert loads == ["good", "bad", "bad"]


@contextmanager
def _uvicorn(app: Any) -> Iterator[str]:
    """The app behind a real server on 127.0.0.1 (a free port, bound here so no other test can take it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started or not thread.is_alive(), timeout_s=30)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_hot_swap_under_load_fails_no_request(fast_model: Path, second_model: Path, kotone_home: Path) -> None:
    _promote(kotone_home, fast_model, "model-a")
    app = create_app(_registry(kotone_home), check_interval_s=FAST_CHECK_S)
    stop = threading.Event()
    failures: list[str] = []
    seen: list[list[tuple[float, str]]] = [[] for _ in range(8)]
    texts = [REQUEST, RULE, "a whispering lullaby", "a walking-pace stroll"]

    def client_loop(index: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"text": texts[n % len(texts)], "source_type": "rule_prompt" if n % 2 else "request_text"}
                try:
                    response = http.post("/predict", json=body)
                    if response.status_code != 200 or len(response.json()["prediction"]) != 6:
                        failures.append(f"{response.status_code}: {response.text}")
                    else:
                        seen[index].append((time.monotonic(), response.json()["model_id"]))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    with _uvicorn(app) as url:
        threads = [threading.Thread(target=client_loop, args=(i, url)) for i in range(8)]
        for thread in threads:
            thread.start()
        try:
            _wait_for(lambda: all(len(s) >= 5 for s in seen))
            promoted_at = time.monotonic()
            _promote(kotone_home, second_model, "model-b", "decision-2")
            _wait_for(lambda: all(s and s[-1][1] == "model-b" for s in seen))
            switched_after = max(next(t for t, m in s if m == "model-b") for s in seen) - promoted_at
            time.sleep(0.3)  # keep the load on a while after the swap
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    assert failures == []
    assert switched_after < 5.0
    for responses in seen:
        models = [m for _, m in responses]
        first_b = models.index("model-b")
        # Each client saw the old model, then only the new one: the swap is one step, never back and forth.
        assert models[0] == "model-a" and set(models[first_b:]) == {"model-b"}
    assert app.state.holder.loads == 2


# --- the command --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_kotone_serve_runs_and_stops(fast_model: Path, kotone_home: Path, stop: signal.Signals) -> None:
    _promote(kotone_home, fast_model, "cycle-007-local")
    port = _free_port()
    command = [sys.executable, "-c", "from kotone_pipeline.cli import main; main()", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        command,
        env={**os.environ, "KOTONE_HOME": str(kotone_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert proc.poll() is None, proc.communicate()
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(healthy, timeout_s=60)
        response = httpx.post(f"{url}/predict", json={"text": REQUEST}, timeout=10)
        assert response.status_code == 200
        assert response.json()["model_id"] == "cycle-007-local"
        assert response.json()["prediction"] == _expected(fast_model, REQUEST)
    finally:
        proc.send_signal(stop)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr  # stopping is the normal end of a server
    assert f"serving cycle-007-local on {url}" in stdout
    assert stderr.strip().endswith("stopped")
    assert "Traceback" not in stderr


def test_kotone_serve_on_a_taken_port_is_one_line(kotone_home: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli_app, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"error: port {port} on 127.0.0.1 is already in use: stop the other server or pass --port"
    )


# --- concurrency --------------------------------------------------------------------------------------------


class _Slow(Predictor):
    """Energy = the text's length mod 11; each call takes a while, so concurrent requests pile up behind it."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def predict(self, inputs: Any) -> list[Prediction]:
        self.calls.append(len(inputs))
        time.sleep(0.1)
        if self.fail and any(item.text == "boom" for item in inputs):
            raise RuntimeError("the model broke")
        return [Prediction(vector=Vector.from_values([len(i.text) % 11, 0, 0, 0, 0, 0])) for i in inputs]


def test_concurrent_predictions_are_coalesced_and_each_gets_its_own(kotone_home: Path) -> None:
    _promote(kotone_home, Path("/m/slow"), "slow")
    slow = _Slow()
    app = create_app(_registry(kotone_home), loader=lambda champion: slow)
    texts = ["x" * n for n in range(1, 17)]
    results: dict[str, Any] = {}
    with _uvicorn(app) as url:
        slow.calls.clear()  # the warm-up

        def ask(text: str) -> None:
            results[text] = httpx.post(f"{url}/predict", json={"text": text}, timeout=30)

        threads = [threading.Thread(target=ask, args=(text,)) for text in texts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(results[t].status_code == 200 for t in texts)
    assert [results[t].json()["prediction"]["energy"] for t in texts] == [len(t) % 11 for t in texts]
    assert sum(slow.calls) == len(texts) and len(slow.calls) < len(texts) / 2


def test_a_model_failure_is_a_json_500(kotone_home: Path) -> None:
    _promote(kotone_home, Path("/m/slow"), "fragile")
    with TestClient(
        create_app(_registry(kotone_home), loader=lambda c: _Slow(fail=True)), raise_server_exceptions=False
    ) as client:
        single = client.post("/predict", json={"text": "boom"})
        batch = client.post("/predict/batch", json={"items": [{"text": "fine"}, {"text": "boom"}]})
        fine = client.post("/predict", json={"text": "fine"})
    for response in (single, batch):
        assert response.status_code == 500
        assert response.json() == {"error": "model fragile failed: the model broke"}
    assert fine.status_code == 200
