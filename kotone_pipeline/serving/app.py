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
import html
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from kotone_pipeline.domain.dims import DIMS, MAX_VALUE, MIN_VALUE, SOURCE_TYPES
from kotone_pipeline.domain.predictor import PredictInput, Prediction, Predictor
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.services.request_log import RequestLog, ReviewError, new_request_id
from kotone_pipeline.serving.request_logging import LogWriter

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64_000
DEFAULT_MAX_BATCH = 256
DEFAULT_CHECK_INTERVAL_S = 1.0
# A champion whose load failed is not retried on every check (a load can take seconds), only after this.
RETRY_FAILED_LOAD_S = 30.0
WARM_UP_TEXT = "a quiet warm piano piece for a rainy evening"
DEFAULT_SOURCE_TYPE = "request_text"
NO_CHAMPION = "no champion yet: promote one (`kotone demo` or `kotone cycle new ... --run`); the server picks it up"

Loader = Callable[[Champion], Predictor]
_Signature = tuple[int, int, int] | None  # (inode, mtime_ns, size) of the champion file; None = no file


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _now_ms() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def warm_up(predictor: Predictor) -> None:
    """One prediction per source type, so lazy parts (the sentence encoder, LoRA weights, both sub-models)
    load now and not on the first request, and a model that cannot run fails its load, not a request."""
    predictor.predict([PredictInput(text=WARM_UP_TEXT, source_type=source_type) for source_type in SOURCE_TYPES])


def load_champion(champion: Champion) -> Predictor:
    """The default loader: the champion's predictor, warmed up."""
    from kotone_pipeline.cycle.champion_eval import load_predictor

    predictor = load_predictor(champion.model_uri)
    warm_up(predictor)
    return predictor


@dataclass(frozen=True)
class Served:
    """What one request uses, read once: the champion and its loaded predictor never disagree."""

    champion: Champion
    predictor: Predictor
    loaded_at: str


def _same_champion(a: Champion, b: Champion) -> bool:
    return (a.decision_id, a.model_id, a.model_uri) == (b.decision_id, b.model_id, b.model_uri)


class ChampionHolder:
    """The served champion, reloaded when the registry's champion changes (see the module docstring)."""

    def __init__(
        self,
        registry: ChampionRegistry,
        *,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        loader: Loader = load_champion,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.check_interval_s = check_interval_s
        self._loader = loader
        self._clock = clock
        self._served: Served | None = None
        self._signature: _Signature = None
        self._seen_once = False  # the first check always loads, whatever the signature
        self._next_check = 0.0
        self._retry_at = 0.0
        self._loading = False
        self._error: str | None = None
        self._state_lock = threading.Lock()  # guards the bookkeeping above, never held during a load
        self._start_lock = threading.Lock()
        self._started = False
        self.loads = 0  # successful loads, for tests and /healthz

    @property
    def served(self) -> Served | None:
        return self._served

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """The first load, synchronously (server startup): serving begins with the champion warm."""
        with self._start_lock:
            if self._started:
                return
            self.refresh(wait=True, force=True)
            self._started = True

    def _stat(self) -> _Signature:
        try:
            st = self.registry.champion_path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self, *, wait: bool = False, force: bool = False) -> None:
        """Cheap enough for every request: at most once per interval one ``stat``; when the champion file
        changed, load the champion in a background thread (or in this one with ``wait``)."""
        now = self._clock()
        if not force and now < self._next_check:
            return
        with self._state_lock:
            if self._loading or (not force and now < self._next_check):
                return
            self._next_check = now + self.check_interval_s
            signature = self._stat()
            unchanged = self._seen_once and signature == self._signature
            if unchanged and not (self._error is not None and now >= self._retry_at):
                return
            self._loading = True
        if wait:
            self._load(signature)
        else:
            threading.Thread(target=self._load, args=(signature,), name="kotone-champion-load", daemon=True).start()

    def _load(self, signature: _Signature) -> None:
        error: str | None = None
        try:
            champion = self.registry.current()
            served = self._served
            if champion is None:
                if served is not None:
                    error = f"the registry has no champion any more; still serving {served.champion.model_id}"
                    log.warning(error)
            elif served is None or not _same_champion(served.champion, champion):
                error = self._swap_in(champion, served)
        except Exception as exc:  # a corrupt registry file: keep serving what we have
            error = f"cannot read the champion registry: {exc}"
            log.warning(error)
        finally:
            with self._state_lock:
                self._signature = signature
                self._seen_once = True
                self._error = error
                if error is not None:
                    self._retry_at = self._clock() + max(RETRY_FAILED_LOAD_S, self.check_interval_s)
                self._loading = False

    def _swap_in(self, champion: Champion, old: Served | None) -> str | None:
        started = time.perf_counter()
        try:
            predictor = self._loader(champion)
        except Exception as exc:
            still = f"; still serving {old.champion.model_id}" if old is not None else ""
            message = f"cannot load the champion {champion.model_id} ({champion.model_uri}): {exc}{still}"
            log.warning(message, exc_info=True)
            return message
        # One reference assignment: a request sees either the old pair or the new one, never a mix.
        self._served = Served(champion=champion, predictor=predictor, loaded_at=_now_iso())
        self.loads += 1
        was = f" (was {old.champion.model_id})" if old is not None else ""
        log.info("serving champion %s%s, loaded in %.2f s", champion.model_id, was, time.perf_counter() - started)
        return None

    def health(self) -> dict[str, Any]:
        served, error = self._served, self._error
        status = "no_champion" if served is None else ("degraded" if error is not None else "ok")
        return {
            "status": status,
            "model_id": served.champion.model_id if served else None,
            "promoted_at": served.champion.promoted_at if served else None,
            "loaded_at": served.loaded_at if served else None,
            "reloading": self._loading,
            "error": error,
        }


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
    docs_page = _docs_html(spec)

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


# --- OpenAPI and the docs page -----------------------------------------------------------------------------


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json_body(ref: str, example: Any) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}, "example": example}},
    }


def _ok(ref: str, example: Any, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}, "example": example}},
    }


def openapi_document(
    *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH
) -> dict[str, Any]:
    """The OpenAPI 3 description of the API, written by hand (the endpoints are few and stable)."""
    dims_example = dict.fromkeys(DIMS, 5)
    dims = {
        "type": "object",
        "nullable": True,
        "description": f"The six dims, integers {MIN_VALUE}..{MAX_VALUE}; null when the model's output "
        "was not a valid vector.",
        "properties": {dim: {"type": "integer", "minimum": MIN_VALUE, "maximum": MAX_VALUE} for dim in DIMS},
        "required": list(DIMS),
    }
    text = {"type": "string", "minLength": 1, "description": "The text to predict; not blank."}
    source_type = {"type": "string", "enum": list(SOURCE_TYPES), "default": DEFAULT_SOURCE_TYPE}
    item_id = {"description": "Any JSON value; echoed back with the item's prediction."}
    request_id = {
        "type": "string",
        "nullable": True,
        "description": "The id this answer is logged under (send it to POST /feedback); null when the request "
        "log is off or the model gave no valid prediction.",
    }
    too_large = _error_response(f"The body is over {max_body_bytes} bytes.")
    bad_json = _error_response("The body is not JSON (or is empty).")
    no_champion = _error_response("No champion is being served yet.")
    schemas: dict[str, Any] = {
        "Dims": dims,
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "PredictRequest": {
            "type": "object",
            "properties": {"text": text, "source_type": source_type},
            "required": ["text"],
        },
        "PredictResponse": {
            "type": "object",
            "properties": {
                "request_id": request_id,
                "model_id": {"type": "string"},
                "prediction": {"$ref": "#/components/schemas/Dims"},
                "latency_ms": {"type": "number", "description": "The model's time for this text."},
                "source_type": source_type,
            },
        },
        "BatchRequest": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "maxItems": max_batch,
                    "items": {
                        "type": "object",
                        "properties": {"text": text, "source_type": source_type, "id": item_id},
                        "required": ["text"],
                    },
                }
            },
            "required": ["items"],
        },
        "BatchResponse": {
            "type": "object",
            "properties": {
                "model_id": {"type": "string"},
                "predictions": {
                    "type": "array",
                    "description": "One per item, in input order; id only when the item had one.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": item_id,
                            "request_id": request_id,
                            "prediction": {"$ref": "#/components/schemas/Dims"},
                        },
                    },
                },
                "latency_ms": {"type": "number", "description": "The model's time for the whole batch."},
            },
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok", "no_champion", "degraded"]},
                "model_id": {"type": "string", "nullable": True},
                "promoted_at": {"type": "string", "nullable": True},
                "loaded_at": {"type": "string", "nullable": True},
                "reloading": {"type": "boolean"},
                "error": {
                    "type": "string",
                    "nullable": True,
                    "description": "Why the registry's latest champion is not the one served (a failed load).",
                },
                "model_calls": {"type": "integer", "description": "Model calls made for POST /predict."},
                "texts_predicted": {"type": "integer", "description": "Texts those calls predicted."},
                "request_log": {
                    "type": "object",
                    "description": "The request log: items logged, items not logged (a full disk, a locked "
                    "log; the requests were answered all the same), items waiting for the writer, the last "
                    "error. Only enabled=false when the log is off.",
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "logged": {"type": "integer"},
                        "not_logged": {"type": "integer"},
                        "pending": {"type": "integer"},
                        "last_error": {"type": "string", "nullable": True},
                    },
                },
            },
        },
        "FeedbackRequest": {
            "type": "object",
            "properties": {
                "request_id": {"type": "string", "description": "From a /predict or /predict/batch answer."},
                "labels": {
                    "$ref": "#/components/schemas/Dims",
                    "description": "What the six values should have been (all six, integers 0..10).",
                },
                "comment": {"type": "string"},
            },
            "required": ["request_id"],
        },
        "Feedback": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer"},
                "request_id": {"type": "string"},
                "at": {"type": "string", "description": "UTC"},
                "labels": {"$ref": "#/components/schemas/Dims"},
                "comment": {"type": "string", "nullable": True},
            },
        },
        "Model": {
            "type": "object",
            "properties": {
                "model_id": {"type": "string"},
                "model_uri": {"type": "string"},
                "cycle_id": {"type": "string"},
                "run_id": {"type": "string"},
                "promoted_at": {"type": "string"},
                "holdout_mae": {"type": "number"},
                "human_mae": {"type": "number", "nullable": True},
                "per_dim_mae": {"type": "object", "additionalProperties": {"type": "number"}},
                "decision_id": {"type": "string", "nullable": True},
                "decision_reason": {"type": "string"},
                "forced": {"type": "boolean"},
                "loaded_at": {"type": "string"},
            },
        },
    }
    predict_example = {"text": "a quiet rainy-day piano piece", "source_type": "request_text"}
    batch_example = {"items": [{"id": 1, "text": "a quiet rainy-day piano piece"}, {"text": "stomping techno"}]}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kotone serve",
            "version": "1",
            "description": "The current champion's six-dim predictions. The server reloads a newly promoted "
            "champion without a restart; every answer is logged under its request_id for people to review "
            '(`kotone review`) unless the log is off; errors are JSON objects {"error": "..."}.',
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict the six dims of one text",
                    "requestBody": _json_body("PredictRequest", predict_example),
                    "responses": {
                        "200": _ok(
                            "PredictResponse",
                            {
                                "request_id": "req_3f2a9c0d1e4b5a6c7d8e",
                                "model_id": "cycle-007-local",
                                "prediction": dims_example,
                                "latency_ms": 1.2,
                                "source_type": "request_text",
                            },
                        ),
                        "400": bad_json,
                        "413": too_large,
                        "422": _error_response("Text missing, blank or not a string, or an unknown source_type."),
                        "503": no_champion,
                    },
                }
            },
            "/predict/batch": {
                "post": {
                    "summary": f"Predict up to {max_batch} texts at once",
                    "requestBody": _json_body("BatchRequest", batch_example),
                    "responses": {
                        "200": _ok(
                            "BatchResponse",
                            {
                                "model_id": "cycle-007-local",
                                "predictions": [
                                    {"id": 1, "request_id": "req_3f2a9c0d1e4b5a6c7d8e", "prediction": dims_example},
                                    {"request_id": "req_0b1c2d3e4f5a6b7c8d9e", "prediction": dims_example},
                                ],
                                "latency_ms": 2.5,
                            },
                        ),
                        "400": bad_json,
                        "413": too_large,
                        "422": _error_response(f"A bad item (the error names it) or more than {max_batch} items."),
                        "503": no_champion,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Whether a champion is served, and whether the latest one loaded",
                    "responses": {
                        "200": _ok(
                            "Health",
                            {
                                "status": "ok",
                                "model_id": "cycle-007-local",
                                "model_calls": 12,
                                "texts_predicted": 40,
                                "request_log": {
                                    "enabled": True,
                                    "logged": 40,
                                    "not_logged": 0,
                                    "pending": 0,
                                    "last_error": None,
                                },
                            },
                            "ok or degraded; model_calls / texts_predicted count /predict batching since start; "
                            "request_log counts what was logged and what could not be",
                        ),
                        "503": _ok("Health", {"status": "no_champion", "model_id": None}, "No champion yet"),
                    },
                }
            },
            "/feedback": {
                "post": {
                    "summary": "An app's feedback on one answer (the right values, a comment), stored beside the "
                    "logged request",
                    "requestBody": _json_body(
                        "FeedbackRequest",
                        {"request_id": "req_3f2a9c0d1e4b5a6c7d8e", "labels": dims_example, "comment": "too loud"},
                    ),
                    "responses": {
                        "200": _ok(
                            "Feedback",
                            {
                                "seq": 1,
                                "request_id": "req_3f2a9c0d1e4b5a6c7d8e",
                                "at": "2026-03-01T12:00:00.000+00:00",
                                "labels": dims_example,
                                "comment": "too loud",
                            },
                        ),
                        "400": bad_json,
                        "404": _error_response("No logged request has that id (or the request log is off)."),
                        "413": too_large,
                        "422": _error_response("Labels not six integers 0..10, no request_id, or nothing to store."),
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The champion being served",
                    "responses": {
                        "200": _ok("Model", {"model_id": "cycle-007-local", "holdout_mae": 0.29}),
                        "404": _error_response("No champion yet."),
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
            "/docs": {
                "get": {"summary": "A page describing the endpoints", "responses": {"200": {"description": "OK"}}}
            },
        },
        "components": {"schemas": schemas},
    }


def _docs_html(spec: dict[str, Any]) -> str:
    """A self-contained page rendered from the OpenAPI document: nothing is fetched from elsewhere."""
    sections = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts = [
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>",
                f"<p>{html.escape(op['summary'])}</p>",
            ]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" in body:
                parts.append(f"<p>Request body:</p><pre>{html.escape(json.dumps(body['example'], indent=2))}</pre>")
            rows = "".join(
                f"<tr><td>{code}</td><td>{html.escape(resp['description'])}</td></tr>"
                for code, resp in op["responses"].items()
            )
            parts.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table>")
            ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {})
            if "example" in ok:
                parts.append(f"<p>Response:</p><pre>{html.escape(json.dumps(ok['example'], indent=2))}</pre>")
            sections.append("<section>" + "".join(parts) + "</section>")
    info = spec["info"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(info['title'])}</title>"
        "<style>body{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
        "pre{background:#f4f4f4;padding:.6rem}td,th{padding:.2rem .8rem;text-align:left}"
        "section{border-top:1px solid #ddd}</style></head><body>"
        f"<h1>{html.escape(info['title'])}</h1><p>{html.escape(info['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3).</p>"
        + "".join(sections)
        + "</body></html>"
    )
