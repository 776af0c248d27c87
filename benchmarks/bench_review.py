"""The flywheel's serving side (issue 19): what the request log costs ``kotone serve``, and how fast the review
page's queue loads.

- ``serve_p95_ms_log`` / ``serve_p95_ms_nolog``: two ``kotone serve --port 0`` processes side by side, one
  logging (the default) and one with ``--no-log``, the same small champion without the sentence encoder (a
  fast model: the log's share of the latency is larger than with the encoder, so this is the conservative
  case); ``CLIENTS`` concurrent clients send ``REQUESTS`` POST /predict per mode per run (every text new), in
  ``BLOCKS`` blocks alternating between the two servers so drift on a shared machine hits both alike; p95 of
  the per-request latency at the client. ``serve_log_overhead_ms`` = on - off (target <= 1 ms);
  ``serve_log_lost``: requests answered 200 by the logging server whose request id is not in the log
  afterwards (target 0). ``serve_log_submit_us``: what the log adds to a request's own path, timed
  in-process: building the row and queueing it for the writer thread (median per item over 20,000).
- ``review_page_ms``: the first ``GET /review/queue?limit=20`` (what the page asks for when it opens) after a
  review server starts on a log of ``LOGGED`` requests (target <= 300 ms). The server scores the waiting
  requests once at startup (``review_startup_s``, includes reading the 5,400 training texts); every page load
  then scores only what was logged since. ``review_page_cold_ms``: the same first load with nothing scored
  yet: it scores the newest ``SCORE_CAP`` (the cap; the rest wait for the next loads) and ranks.

Server and clients share the machine's cores, so absolute figures are a floor; compare within a run.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import Benchmark, Row
from benchmarks.bench_serve import _Client, _promote, _temp_home
from kotone_pipeline.cli.traffic import kotone_server

SEED = 20260419
TRAIN_GROUPS = 200
CLIENTS = 8
REQUESTS = 1000  # per mode per run, sent in BLOCKS alternating blocks
BLOCKS = 5
LOGGED = 10_000
SCORE_CAP = 500
TARGET_OVERHEAD_MS = 1.0
TARGET_PAGE_MS = 300.0


def _concurrent_latencies(url: str, texts: list[str]) -> tuple[list[float], list[str], int]:
    """(per-request latencies in ms, request ids answered, failed requests) with ``CLIENTS`` clients."""
    shares = [texts[i::CLIENTS] for i in range(CLIENTS)]
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    ids: list[list[str]] = [[] for _ in range(CLIENTS)]
    failed = [0] * CLIENTS

    def client(index: int) -> None:
        connection = _Client(url)
        try:
            for text in shares[index]:
                started = time.perf_counter()
                status, body = connection.predict(text)
                latencies[index].append((time.perf_counter() - started) * 1000)
                if status == 200 and body is not None:
                    if body.get("request_id"):
                        ids[index].append(body["request_id"])
                else:
                    failed[index] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for part in latencies for x in part], [x for part in ids for x in part], sum(failed)


def _health(url: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/healthz")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def run_request_log(repeats: int) -> dict[str, float]:
    from kotone_pipeline.domain.data.schemas import LocalHyperParams
    from kotone_pipeline.domain.model.embedding_cache import clear_encoders
    from kotone_pipeline.domain.model.local_model import LocalTextModel
    from kotone_pipeline.domain.requests.catalog import load_catalog
    from kotone_pipeline.domain.requests.teacher import generate_pairs
    from kotone_pipeline.services.champion import ChampionRegistry
    from kotone_pipeline.services.request_log import RequestLog

    repeats = max(1, repeats)
    catalog = load_catalog()
    train = generate_pairs(catalog, TRAIN_GROUPS, SEED, "breview-train", pool="base")
    needed = 2 * REQUESTS * repeats
    unseen = generate_pairs(catalog, needed * 2, SEED + 1, "breview")
    texts = list(dict.fromkeys(p.text for p in unseen if p.source_type == "request_text"))[:needed]
    texts += [f"{text} (again {i})" for i, text in enumerate(texts[: max(0, needed - len(texts))])]
    if len(texts) < needed:
        raise RuntimeError(f"only {len(texts)} distinct request texts for {needed} requests")
    on_p95: list[float] = []
    off_p95: list[float] = []
    answered: list[str] = []
    with _temp_home() as root:
        clear_encoders()
        try:
            model = (
                LocalTextModel(model_id="bench-review")
                .fit(train, LocalHyperParams(use_encoder=False))
                .save(root / "model")
            )
            homes = {"log": root / "home_log", "nolog": root / "home_nolog"}
            for home in homes.values():
                _promote(ChampionRegistry(home / "registry"), model, "bench-review", "decision-a")
            with (
                kotone_server(["serve"], homes["log"]) as log_url,
                kotone_server(["serve", "--no-log"], homes["nolog"]) as nolog_url,
            ):
                _concurrent_latencies(log_url, [f"warm-up {i}" for i in range(80)])
                _concurrent_latencies(nolog_url, [f"warm-up {i}" for i in range(80)])
                cursor = 0
                block = REQUESTS // BLOCKS
                for i in range(repeats):
                    latencies: dict[str, list[float]] = {"log": [], "nolog": []}
                    for b in range(BLOCKS):
                        order = [("log", log_url), ("nolog", nolog_url)]
                        if (i + b) % 2:
                            order.reverse()  # neither mode always goes first
                        for mode, url in order:
                            sent, ids, failed = _concurrent_latencies(url, texts[cursor : cursor + block])
                            cursor += block
                            if failed:
                                raise RuntimeError(f"{failed} request(s) failed ({mode})")
                            latencies[mode].extend(sent)
                            if mode == "log":
                                answered.extend(ids)
                    on_p95.append(float(np.percentile(latencies["log"], 95)))
                    off_p95.append(float(np.percentile(latencies["nolog"], 95)))
                for _ in range(200):  # the writer may still be on its last batch
                    if _health(log_url)["request_log"]["pending"] == 0:
                        break
                    time.sleep(0.05)
                health = _health(log_url)["request_log"]
            logged = {r.request_id for r in RequestLog(homes["log"]).requests_between(0, 10**9)}
            nolog_files = (homes["nolog"] / "requests").exists()
        finally:
            clear_encoders()
    lost = len(set(answered) - logged)
    if nolog_files:
        raise RuntimeError("kotone serve --no-log wrote a request log")
    return {
        "serve_log_submit_us": _submit_us(),
        "serve_p95_ms_log": statistics.median(on_p95),
        "serve_p95_ms_nolog": statistics.median(off_p95),
        "serve_log_overhead_ms": statistics.median(a - b for a, b in zip(on_p95, off_p95, strict=True)),
        "serve_log_lost": float(lost),
        "serve_log_not_logged": float(health["not_logged"]),
        "serve_log_answered": float(len(answered)),
    }


def _submit_us(n: int = 20_000) -> float:
    """Median microseconds per item that a request spends on the log: its row built and queued (the writer
    thread runs meanwhile, into a temporary log, as in the server)."""
    import tempfile

    from kotone_pipeline.domain.data.dims import DIMS
    from kotone_pipeline.services.request_log import RequestLog, new_request_id
    from kotone_pipeline.serving.request_logging import LogWriter

    prediction = dict.fromkeys(DIMS, 5)
    with tempfile.TemporaryDirectory() as tmp:
        writer = LogWriter(RequestLog(Path(tmp)))
        writer.start()
        timings = []
        for i in range(n):
            started = time.perf_counter()
            row = {
                "request_id": new_request_id(),
                "at": "2026-01-01T00:00:00.000+00:00",
                "text": f"request {i}",
                "source_type": "request_text",
                "model_id": "bench",
                "prediction": dict(prediction),
                "latency_ms": 1.0,
            }
            writer.submit([row])
            timings.append((time.perf_counter() - started) * 1e6)
        writer.close()
    return statistics.median(timings)


def rows_request_log(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("the log's work on a request's own path (row built + queued)", r["serve_log_submit_us"], "us", 1),
        Row(f"serve p95, {CLIENTS} concurrent clients, request log on", r["serve_p95_ms_log"], "ms", repeats),
        Row(
            "  the same server with --no-log",
            r["serve_p95_ms_nolog"],
            "ms",
            repeats,
            r["serve_p95_ms_log"] / r["serve_p95_ms_nolog"],
            "log on / off",
        ),
        Row(
            "  p95 added by the log (on - off, same run)",
            r["serve_log_overhead_ms"],
            "ms",
            repeats,
            r["serve_log_overhead_ms"] / TARGET_OVERHEAD_MS,
            f"target {TARGET_OVERHEAD_MS:.0f} ms",
        ),
        Row(
            f"  answered requests missing from the log (of {r['serve_log_answered']:.0f})",
            r["serve_log_lost"],
            "",
            1,
        ),
        Row("  counted not_logged in /healthz", r["serve_log_not_logged"], "", 1),
    ]


# --- the review page -----------------------------------------------------------------------------------------


@contextmanager
def _review_server(app: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not server.started:
            raise RuntimeError("the review server did not start")
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _get_ms(address: str, path: str) -> tuple[float, Any]:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
        return elapsed, body
    finally:
        connection.close()


def run_review_page(repeats: int) -> dict[str, float]:
    from kotone_pipeline.domain.data.dims import DIMS
    from kotone_pipeline.domain.requests.catalog import load_catalog
    from kotone_pipeline.domain.requests.teacher import generate_pairs
    from kotone_pipeline.services.request_log import RequestLog, new_request_id
    from kotone_pipeline.serving.review_app import create_review_app, teacher_texts

    repeats = max(1, repeats)
    rng = random.Random(SEED)
    pairs = generate_pairs(load_catalog(), LOGGED, SEED + 2, "breview-log")
    texts = list(dict.fromkeys(p.text for p in pairs))
    while len(texts) < LOGGED:  # people repeat themselves: fill up with near repeats
        texts.append(f"{rng.choice(texts)} (again {len(texts)})")
    items = [
        {
            "request_id": new_request_id(),
            "text": text,
            "source_type": "rule_prompt" if text.startswith("Compose a track") else "request_text",
            "model_id": "bench",
            "prediction": {d: rng.randint(0, 10) for d in DIMS},
            "latency_ms": 1.0,
        }
        for text in texts[:LOGGED]
    ]
    page_ms: list[float] = []
    cold_ms: list[float] = []
    startup_s: list[float] = []
    with _temp_home() as root:
        home = root / "home"
        RequestLog(home).append(items)
        teacher_texts(home)  # the base set is built once (what the first `kotone review` on a home does)
        for _ in range(repeats):
            started = time.perf_counter()
            app = create_review_app(RequestLog(home), teacher_texts(home), score_cap=SCORE_CAP)
            with _review_server(app) as address:
                startup_s.append(time.perf_counter() - started)
                _get_ms(address, "/")
                elapsed, body = _get_ms(address, "/review/queue?limit=20")
                if json.loads(body)["total"] != LOGGED:
                    raise RuntimeError("the queue does not see every logged request")
                page_ms.append(elapsed)
            app = create_review_app(RequestLog(home), teacher_texts(home), score_cap=SCORE_CAP, warm=False)
            with _review_server(app) as address:
                _get_ms(address, "/")
                cold_ms.append(_get_ms(address, "/review/queue?limit=20")[0])
    return {
        "review_page_ms": statistics.median(page_ms),
        "review_page_cold_ms": statistics.median(cold_ms),
        "review_startup_s": statistics.median(startup_s),
    }


def rows_review_page(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row(
            f"review page: first queue load, {LOGGED:,} logged requests",
            r["review_page_ms"],
            "ms",
            repeats,
            r["review_page_ms"] / TARGET_PAGE_MS,
            f"target {TARGET_PAGE_MS:.0f} ms",
        ),
        Row(
            f"  the same with nothing scored yet (scores the newest {SCORE_CAP})",
            r["review_page_cold_ms"],
            "ms",
            repeats,
            r["review_page_cold_ms"] / TARGET_PAGE_MS,
            f"target {TARGET_PAGE_MS:.0f} ms",
        ),
        Row("  review server start-up (reads training texts, scores the backlog)", r["review_startup_s"], "s", repeats),
    ]


BENCHMARKS = [
    Benchmark("request_log", run_request_log, rows_request_log),
    Benchmark("review_page", run_review_page, rows_review_page),
]
