"""``kotone serve`` over real HTTP: latency one request at a time, throughput with 8 clients, a champion swap.

``kotone serve --port 0`` runs as its own process on 127.0.0.1, as a user starts it, with a small champion
trained at the default hyper-parameters, so every request runs the sentence encoder; the clients are threads
of this process. Every request text is new to the server (no served text is in its embedding cache, in a temp
KOTONE_HOME): the conservative figure.

- ``serve_p50_ms`` / ``serve_p95_ms``: ``SEQUENTIAL`` POST /predict, one after another on one keep-alive
  connection, timed at the client;
- ``serve_direct_p95_ms``: the same model called directly on as many other new texts (no HTTP): the baseline;
- ``serve_rps``: ``CLIENTS`` concurrent clients sending ``CONCURRENT`` requests in all, requests per second;
  ``serve_mean_batch``: texts per predictor call meanwhile (the server coalesces concurrent requests; read
  from its ``/healthz`` counters);
  ``serve_direct_rps``: the model alone on as many other new texts in batches of that size: the ceiling;
- ``serve_swap_failed``: failed requests (not 200, or a connection error) while ``CLIENTS`` clients send
  ``SWAP_REQUESTS`` in all and a second champion is promoted a quarter of the way in;
  ``serve_swap_switched`` is 1 when every client ended on the new champion.

Server and clients share the 2 cores of a small machine, so the figures are a floor. Targets:
p95 <= 30 ms, >= 200 req/s with 8 clients, no failed request across a swap.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import Row
from kotone_pipeline.cli.traffic import kotone_server

SEED = 20260301
TRAIN_GROUPS = 400  # 800 pairs, both source types
SEQUENTIAL = 300
CLIENTS = 8
CONCURRENT = 800
SWAP_REQUESTS = 800
CHECK_INTERVAL_S = 0.2
TARGET_P95_MS = 30.0
TARGET_RPS = 200.0


@contextmanager
def _temp_home() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    saved = {key: os.environ.get(key) for key in ("KOTONE_HOME", "KOTONE_EMBEDDING_CACHE")}
    os.environ["KOTONE_HOME"] = str(root / "home")
    os.environ.pop("KOTONE_EMBEDDING_CACHE", None)  # the cache under the temp home: empty
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


def _health(url: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/healthz")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def _promote(registry: Any, model_dir: Path, model_id: str, decision: str) -> None:
    from kotone_pipeline.services.champion import Champion

    champion = Champion(
        model_id=model_id,
        model_uri=str(model_dir),
        cycle_id="bench",
        run_id=decision,
        holdout_mae=0.3,
        decision_reason="benchmark",
    )
    registry.promote(champion, decision)


class _Client:
    """One keep-alive connection (http.client: the lightest client, so the server gets the CPU)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def predict(self, text: str) -> tuple[int, dict[str, Any] | None]:
        body = json.dumps({"text": text})
        try:
            self.connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnects on the next request
            return 0, None
        return response.status, json.loads(data) if response.status == 200 else None

    def close(self) -> None:
        self.connection.close()


def _sequential(url: str, texts: list[str]) -> list[float]:
    client = _Client(url)
    latencies = []
    try:
        for text in texts:
            started = time.perf_counter()
            status, _ = client.predict(text)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"POST /predict answered {status}")
    finally:
        client.close()
    return latencies


def _direct(predictor: Any, texts: list[str]) -> list[float]:
    """The same texts' model time alone, no HTTP: what the server adds is the rest."""
    from kotone_pipeline.domain.model.predictor import PredictInput

    latencies = []
    for text in texts:
        started = time.perf_counter()
        predictor.predict([PredictInput(text=text, source_type="request_text")])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _direct_batches(predictor: Any, texts: list[str], size: int) -> float:
    """Seconds the model alone takes for ``texts`` in batches of ``size``: the ceiling for the served rate."""
    from kotone_pipeline.domain.model.predictor import PredictInput

    started = time.perf_counter()
    for i in range(0, len(texts), size):
        predictor.predict([PredictInput(text=text, source_type="request_text") for text in texts[i : i + size]])
    return time.perf_counter() - started


def _concurrent(url: str, texts: list[str], during: Any = None) -> tuple[float, int, list[str]]:
    """(seconds, failed requests, the model id each client saw last); ``during(done)`` runs meanwhile."""
    shares = [texts[i::CLIENTS] for i in range(CLIENTS)]
    failed = [0] * CLIENTS
    last = [""] * CLIENTS
    done = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        connection = _Client(url)
        try:
            for text in shares[index]:
                status, body = connection.predict(text)
                if status == 200 and body is not None:
                    last[index] = body["model_id"]
                else:
                    failed[index] += 1
                with lock:
                    done[0] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    if during is not None:
        during(done)
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(failed), last


def run(repeats: int) -> dict[str, float]:
    from kotone_pipeline.domain.data.schemas import LocalHyperParams
    from kotone_pipeline.domain.model.embedding_cache import clear_encoders
    from kotone_pipeline.domain.model.local_model import LocalTextModel
    from kotone_pipeline.domain.requests.catalog import load_catalog
    from kotone_pipeline.domain.requests.teacher import generate_pairs
    from kotone_pipeline.services.champion import ChampionRegistry

    repeats = max(1, repeats)
    catalog = load_catalog()
    train = generate_pairs(catalog, TRAIN_GROUPS, SEED, "bserve-train", pool="base")
    needed = (2 * SEQUENTIAL + 2 * CONCURRENT) * repeats + SWAP_REQUESTS
    unseen = generate_pairs(catalog, needed * 2, SEED + 1, "bserve")
    texts = list(dict.fromkeys(p.text for p in unseen if p.source_type == "request_text"))
    if len(texts) < needed:
        raise RuntimeError(f"only {len(texts)} distinct request texts for {needed} requests")
    cursor = [0]

    def next_texts(n: int) -> list[str]:
        start = cursor[0]
        cursor[0] += n
        return texts[start : start + n]

    with _temp_home() as root:
        clear_encoders()  # an encoder loaded earlier would bring its warm in-process memo along
        try:
            first = LocalTextModel(model_id="bench-serve-a").fit(train).save(root / "model_a")
            second = LocalTextModel(model_id="bench-serve-b").fit(train, LocalHyperParams(alpha=2.0))
            second_dir = second.save(root / "model_b")
            registry = ChampionRegistry(root / "home" / "registry")
            _promote(registry, first, "bench-serve-a", "decision-a")
            clear_encoders()  # the direct baseline embeds every text afresh too: nothing from the fit is reused
            direct_model = LocalTextModel.load(first)
            p50, p95, direct_p95, rps, direct_rps, mean_batch = [], [], [], [], [], []
            with kotone_server(  # the cache under the temp home: no served text is in it
                ["serve", "--check-interval", str(CHECK_INTERVAL_S)], root / "home", drop_env=["KOTONE_EMBEDDING_CACHE"]
            ) as url:
                for _ in range(repeats):
                    latencies = _sequential(url, next_texts(SEQUENTIAL))
                    p50.append(float(np.percentile(latencies, 50)))
                    p95.append(float(np.percentile(latencies, 95)))
                    direct_p95.append(float(np.percentile(_direct(direct_model, next_texts(SEQUENTIAL)), 95)))
                    before = _health(url)
                    seconds, failed, _ = _concurrent(url, next_texts(CONCURRENT))
                    if failed:
                        raise RuntimeError(f"{failed} request(s) failed without a swap")
                    after = _health(url)
                    rps.append(CONCURRENT / seconds)
                    calls = max(1, after["model_calls"] - before["model_calls"])
                    mean_batch.append((after["texts_predicted"] - before["texts_predicted"]) / calls)
                    size = max(1, round(mean_batch[-1]))
                    direct_rps.append(CONCURRENT / _direct_batches(direct_model, next_texts(CONCURRENT), size))

                def swap_when_a_quarter_is_done(done: list[int]) -> None:
                    while done[0] < SWAP_REQUESTS // 4:
                        time.sleep(0.005)
                    _promote(registry, second_dir, "bench-serve-b", "decision-b")

                _, swap_failed, last = _concurrent(url, next_texts(SWAP_REQUESTS), swap_when_a_quarter_is_done)
        finally:
            clear_encoders()
    return {
        "serve_p50_ms": statistics.median(p50),
        "serve_p95_ms": statistics.median(p95),
        "serve_direct_p95_ms": statistics.median(direct_p95),
        "serve_rps": statistics.median(rps),
        "serve_direct_rps": statistics.median(direct_rps),
        "serve_mean_batch": statistics.median(mean_batch),
        "serve_swap_failed": float(swap_failed),
        "serve_swap_switched": float(all(m == "bench-serve-b" for m in last)),
    }


def rows(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("serve POST /predict one at a time (encoder included), p50", r["serve_p50_ms"], "ms", repeats),
        Row(
            "  the same, p95",
            r["serve_p95_ms"],
            "ms",
            repeats,
            r["serve_p95_ms"] / TARGET_P95_MS,
            f"target {TARGET_P95_MS:.0f} ms",
        ),
        Row(
            "  the model alone on such texts, no HTTP, p95",
            r["serve_direct_p95_ms"],
            "ms",
            repeats,
            r["serve_direct_p95_ms"] / r["serve_p95_ms"],
            "served p95",
        ),
        Row(
            f"serve with {CLIENTS} concurrent clients",
            r["serve_rps"],
            "req/s",
            repeats,
            r["serve_rps"] / TARGET_RPS,
            f"target {TARGET_RPS:.0f} req/s",
        ),
        Row(
            "  the model alone in batches of that size, no HTTP",
            r["serve_direct_rps"],
            "texts/s",
            repeats,
            r["serve_rps"] / r["serve_direct_rps"],
            "served/model (1 = no HTTP cost)",
        ),
        Row("  texts per predictor call (concurrent /predict calls coalesced)", r["serve_mean_batch"], "", repeats),
        Row(f"failed requests across a champion swap ({SWAP_REQUESTS} sent)", r["serve_swap_failed"], "", 1),
        Row("  every client ended on the new champion (1 = yes)", r["serve_swap_switched"], "", 1),
    ]
