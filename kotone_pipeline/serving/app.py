"""The champion behind an HTTP JSON API: ``create_app(registry)`` -> a Starlette app.

``ChampionHolder`` keeps the served (champion, predictor) pair as one immutable ``Served`` reference. At
most every ``check_interval_s`` it stats the registry's champion file (``promote`` replaces it atomically,
so any promotion changes its inode or mtime); on a change a background thread loads and warms the new
predictor and only then swaps the reference. A request reads the reference once, so requests in flight
finish on the predictor they started with and none waits for, or fails because of, a swap. A load
failure keeps the old champion serving and shows in ``/healthz`` (``degraded``) and the log.

Concurrent ``/predict`` calls are run as one predictor call (``Coalescer``): a batch costs far less per text.

With a ``RequestLog`` every answered item gets a request id (returned to the client) and is logged by a
background thread (``serving.request_logging.LogWriter``): the request never waits for the disk, and a log that
cannot be written is counted in ``/healthz`` (``request_log``), never an error. ``POST /feedback`` stores an
app's feedback beside a logged request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kotone_pipeline.domain.data.dims import SOURCE_TYPES
from kotone_pipeline.domain.model.predictor import PredictInput, Prediction
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.request_log import RequestLog, ReviewError, new_request_id
from kotone_pipeline.serving.champion_holder import (
    DEFAULT_CHECK_INTERVAL_S,
    ChampionHolder,
    Loader,
    Served,
    load_champion,
)
from kotone_pipeline.serving.openapi import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_SOURCE_TYPE,
    docs_html,
    openapi_document,
)
from kotone_pipeline.serving.request_logging import LogWriter

log = logging.getLogger(__name__)

NO_CHAMPION = "no champion yet: promote one (`kotone demo` or `kotone cycle new ... --run`); the server picks it up"


def _now_ms() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Coalescer:
    """Runs concurrent single predictions as one predictor call: the sentence encoder and the TF-IDF blocks
    cost much less per text in a batch, which is most of the throughput under concurrent load.

    Nothing waits for a batch to fill: the first request starts a run at once, and the requests that arrive
    while a run is in the thread pool go together in the next one. So one request at a time pays nothing, and
    predictor calls never overlap (the encoder serialises them anyway). Lives on the event loop: no locks."""

    def __init__(self, max_items: int = 64) -> None:
        self.max_items = max_items
        self._pending: list[tuple[Served, PredictInput, asyncio.Future[Prediction]]] = []
        self._running = False
        self.runs = 0  # predictor calls made (/healthz shows it)
        self.texts = 0  # texts those calls predicted

    async def predict(self, served: Served, item: PredictInput) -> Prediction:
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._pending.append((served, item, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_items], self._pending[self.max_items :]
                # Requests that took the old champion before a swap still run on it, apart from the new one's.
                for _, group in itertools.groupby(batch, key=lambda entry: id(entry[0])):
                    await self._run(list(group))
        finally:
            self._running = False

    async def _run(self, group: list[tuple[Served, PredictInput, asyncio.Future[Prediction]]]) -> None:
        served = group[0][0]
        self.runs += 1
        self.texts += len(group)
        try:
            # Off the event loop: health checks and other requests stay responsive during a prediction.
            predictions = await run_in_threadpool(served.predictor.predict, [item for _, item, _ in group])
            if len(predictions) != len(group):
                raise RuntimeError(f"{len(predictions)} predictions for {len(group)} inputs")
        except Exception as exc:
            log.exception("model %s failed on %d text(s)", served.champion.model_id, len(group))
            for _, _, future in group:
                if not future.done():  # a client that went away cancelled its future
                    future.set_exception(exc)
            return
        for (_, _, future), prediction in zip(group, predictions, strict=True):
            if not future.done():
                future.set_result(prediction)


# --- request parsing ---------------------------------------------------------------------------------------


class ApiError(HTTPException):
    """Answered as ``{"error": detail}`` with its status code."""


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


async def _read_json(request: Request, max_body_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, f"invalid Content-Length header {declared!r}") from None
        if size > max_body_bytes:
            raise ApiError(413, f"request body too large: {size} bytes (at most {max_body_bytes})")
    # A chunked body declares no length: count what arrives and stop reading at the limit.
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_body_bytes:
            raise ApiError(413, f"request body too large: over {max_body_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "empty request body: send a JSON object")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"invalid JSON: the body is not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ApiError(400, "invalid JSON: nested too deeply") from None


def _parse_item(obj: Any, where: str = "") -> PredictInput:
    """The same rules as ``kotone predict --jsonl`` lines; other keys are ignored."""
    if not isinstance(obj, dict):
        raise ApiError(422, f"{where}expected a JSON object, got {_json_type(obj)}")
    if "text" not in obj:
        raise ApiError(422, f"{where}missing text")
    text = obj["text"]
    if not isinstance(text, str):
        raise ApiError(422, f"{where}text must be a string, got {_json_type(text)}")
    if not text.strip():
        raise ApiError(422, f"{where}empty text")
    source_type = obj.get("source_type", DEFAULT_SOURCE_TYPE)
    if source_type not in SOURCE_TYPES:
        expected = ", ".join(SOURCE_TYPES)
        raise ApiError(422, f"{where}unknown source_type {source_type!r} (expected one of {expected})")
    return PredictInput(text=text, source_type=source_type)


def _dims(prediction: Prediction) -> dict[str, int] | None:
    return prediction.vector.as_dict() if prediction.vector is not None else None


# --- the app ------------------------------------------------------------------------------------------------


def create_app(
    registry: ChampionRegistry,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
    loader: Loader = load_champion,
    request_log: RequestLog | None = None,
) -> Starlette:
    """The API over ``registry``'s champion; ``app.state.holder`` is its ``ChampionHolder``, ``app.state.coalescer``
    the ``Coalescer`` that batches concurrent ``/predict`` calls, ``app.state.log_writer`` the ``LogWriter``
    (None without ``request_log``: nothing is logged and responses carry ``request_id: null``)."""
    if max_body_bytes < 1 or max_batch < 1:
        raise ValueError("max_body_bytes and max_batch must be at least 1")
    holder = ChampionHolder(registry, check_interval_s=check_interval_s, loader=loader)
    coalescer = Coalescer()
    writer = LogWriter(request_log) if request_log is not None else None
    spec = openapi_document(max_body_bytes=max_body_bytes, max_batch=max_batch)
    docs_page = docs_html(spec)

    async def current() -> Served | None:
        if not holder.started:  # an app driven without its lifespan (a bare TestClient)
            await run_in_threadpool(holder.start)
        holder.refresh()
        return holder.served

    async def serving() -> Served:
        served = await current()
        if served is None:
            raise ApiError(503, holder.health()["error"] or NO_CHAMPION)
        return served

    async def run_model(served: Served, items: list[PredictInput]) -> list[Prediction]:
        try:
            return await run_in_threadpool(served.predictor.predict, items)
        except Exception as exc:
            log.exception("model %s failed", served.champion.model_id)
            raise ApiError(500, f"model {served.champion.model_id} failed: {exc}") from None

    def record(served: Served, items: list[PredictInput], predictions: list[Prediction]) -> list[str | None]:
        """Queue the answered items for the log; their request ids (None when not logged: logging off, or no
        valid prediction to log). Only a dict per item here: the writer thread does the SQLite work."""
        if writer is None:
            return [None] * len(items)
        at = _now_ms()
        ids: list[str | None] = []
        rows = []
        for item, prediction in zip(items, predictions, strict=True):
            dims = _dims(prediction)
            if dims is None:
                ids.append(None)
                continue
            request_id = new_request_id()
            ids.append(request_id)
            rows.append(
                {
                    "request_id": request_id,
                    "at": at,
                    "text": item.text,
                    "source_type": item.source_type,
                    "model_id": served.champion.model_id,
                    "prediction": dims,
                    "latency_ms": prediction.latency_ms,
                }
            )
        writer.submit(rows)
        return ids

    async def predict(request: Request) -> Response:
        item = _parse_item(await _read_json(request, max_body_bytes))
        served = await serving()
        try:
            prediction = await coalescer.predict(served, item)
        except Exception as exc:  # logged once per failed run by the coalescer
            raise ApiError(500, f"model {served.champion.model_id} failed: {exc}") from None
        [request_id] = record(served, [item], [prediction])
        return JSONResponse(
            {
                "request_id": request_id,
                "model_id": served.champion.model_id,
                "prediction": _dims(prediction),
                "latency_ms": round(prediction.latency_ms, 3),
                "source_type": item.source_type,
            }
        )

    async def predict_batch(request: Request) -> Response:
        body = await _read_json(request, max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(422, f'expected a JSON object {{"items": [...]}}, got {_json_type(body)}')
        if "items" not in body:
            raise ApiError(422, "missing items")
        raw_items = body["items"]
        if not isinstance(raw_items, list):
            raise ApiError(422, f"items must be an array, got {_json_type(raw_items)}")
        if len(raw_items) > max_batch:
            raise ApiError(422, f"too many items: {len(raw_items)} (at most {max_batch} per request)")
        items = [_parse_item(raw, f"items[{i}]: ") for i, raw in enumerate(raw_items)]
        served = await serving()
        started = time.perf_counter()
        predictions = await run_model(served, items) if items else []
        latency_ms = (time.perf_counter() - started) * 1000
        request_ids = record(served, items, predictions)
        out = [
            {**({"id": raw["id"]} if "id" in raw else {}), "request_id": request_id, "prediction": _dims(prediction)}
            for raw, prediction, request_id in zip(raw_items, predictions, request_ids, strict=True)
        ]
        return JSONResponse(
            {"model_id": served.champion.model_id, "predictions": out, "latency_ms": round(latency_ms, 3)}
        )

    async def healthz(request: Request) -> Response:
        await current()
        # The coalescer's counters let a client see how well concurrent requests batch (texts per model call).
        health = {**holder.health(), "model_calls": coalescer.runs, "texts_predicted": coalescer.texts}
        health["request_log"] = writer.health() if writer is not None else {"enabled": False}
        return JSONResponse(health, status_code=503 if health["status"] == "no_champion" else 200)

    async def feedback(request: Request) -> Response:
        body = await _read_json(request, max_body_bytes)
        if request_log is None or writer is None:
            raise ApiError(404, "the request log is off (KOTONE_REQUEST_LOG=off or --no-log): no feedback is kept")
        if not isinstance(body, dict):
            raise ApiError(422, f"expected a JSON object {{request_id, labels?, comment?}}, got {_json_type(body)}")
        request_id, labels, comment = body.get("request_id"), body.get("labels"), body.get("comment")
        if not isinstance(request_id, str) or not request_id:
            raise ApiError(422, "request_id: a string from a /predict answer is required")
        if comment is not None and not isinstance(comment, str):
            raise ApiError(422, f"comment must be a string, got {_json_type(comment)}")
        if labels is None and not (comment or "").strip():
            raise ApiError(422, "send labels, a comment or both")

        def store() -> dict[str, Any]:
            if writer.pending:  # the request may still be on its way to the log
                writer.flush(timeout_s=2.0)
            return request_log.add_feedback(request_id, labels, comment).model_dump()

        try:
            stored = await run_in_threadpool(store)
        except ReviewError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return JSONResponse(stored)

    async def model(request: Request) -> Response:
        served = await current()
        if served is None:
            raise ApiError(404, NO_CHAMPION)
        champion = served.champion
        return JSONResponse(
            {
                "model_id": champion.model_id,
                "model_uri": champion.model_uri,
                "cycle_id": champion.cycle_id,
                "run_id": champion.run_id,
                "promoted_at": champion.promoted_at,
                "holdout_mae": champion.holdout_mae,
                "human_mae": champion.human_mae,
                "per_dim_mae": champion.per_dim_mae,
                "decision_id": champion.decision_id,
                "decision_reason": champion.decision_reason,
                "forced": champion.forced,
                "loaded_at": served.loaded_at,
            }
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page)

    async def index(request: Request) -> Response:
        return RedirectResponse("/docs")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(holder.start)
        if writer is not None:
            writer.start()
        watcher = asyncio.create_task(_watch(holder))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if writer is not None:
                await run_in_threadpool(writer.close)  # what is still queued is written first

    routes = [
        Route("/predict", predict, methods=["POST"]),
        Route("/predict/batch", predict_batch, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/model", model, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/", index, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.holder = holder
    app.state.coalescer = coalescer
    app.state.log_writer = writer
    return app


async def _watch(holder: ChampionHolder) -> None:
    """Notice a promotion while no request comes in, so the next one already gets the new champion."""
    while True:
        await asyncio.sleep(holder.check_interval_s)
        holder.refresh()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # Routing's own 404/405 too, so every error a client sees is {"error": ...}.
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)
