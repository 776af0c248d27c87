"""``kotone review``: the page people label logged requests on, and the JSON API it uses.

``create_review_app(log, teacher_texts, token=...)`` -> a Starlette app:

- ``GET /`` the page (one request at a time, sliders, keyboard shortcuts; ``review_page.PAGE``);
- ``GET /review/queue?limit=N[&reviewer=NAME]`` -> ``{"items": [{"id", "text", "source_type", "prediction",
  "model_id", "reason"}], "total": N}``: the next requests to label (``domain.review_queue``), ``total``
  how many wait;
- ``POST /review/{id}`` with ``{"labels": {six dims}, "reviewer"}``, ``{"skip": true, "reviewer"?}`` or
  ``{"junk": true, "reviewer"?}`` -> 200 with the stored review; JSON errors 404 (unknown id), 409 (this
  reviewer already reviewed it), 422 (a value out of 0..10, a missing dim, no reviewer for labels);
- with a token, every ``/review/...`` call needs ``Authorization: Bearer <token>`` (401 otherwise); the page
  itself holds no data and asks for the token once.

Scores are cached per request id for the life of the process (a logged request's text and prediction never
change), so each queue call scores only what was logged since the last one: a request served a minute ago is
in the queue at the next load, no cycle needed. At startup (``warm``) the backlog is scored once; a call that
finds more than ``score_cap`` unscored requests scores the newest ``score_cap`` and leaves the rest for the
next calls, so no page load pays for a huge backlog at once.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from kotone_pipeline.domain.loop.review_queue import (
    Candidate,
    NoveltyIndex,
    Scored,
    lexicon_reading,
    rank,
    score_candidates,
)
from kotone_pipeline.services.request_log import RequestLog, ReviewError
from kotone_pipeline.serving.review_page import PAGE

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
DEFAULT_SCORE_CAP = 500
MAX_BODY_BYTES = 16_000
ANONYMOUS = "anonymous"


def teacher_texts(home: Path) -> list[str]:
    """The training (teacher) texts the novelty signal compares with: ``$KOTONE_HOME/base/teacher_pairs.jsonl``,
    built first when missing (deterministic: the same file the ``teacher_pairs`` asset writes)."""
    from kotone_pipeline.cycle.base import TEACHER_PAIRS_FILE, write_teacher_pairs
    from kotone_pipeline.services.artifacts import CycleArtifacts

    artifacts = CycleArtifacts(home)
    path = artifacts.base_dir / TEACHER_PAIRS_FILE
    if not path.is_file():
        return [pair.text for pair in write_teacher_pairs(artifacts)[0]]
    texts = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


class ReviewQueue:
    """The live queue over a request log (see the module docstring)."""

    def __init__(self, log: RequestLog, train_texts: Sequence[str], *, score_cap: int = DEFAULT_SCORE_CAP) -> None:
        from kotone_pipeline.domain.model.baselines import RuleBaseline

        self.log = log
        self.index = NoveltyIndex(train_texts)
        self.read = lexicon_reading(RuleBaseline())
        self.score_cap = score_cap
        self._scored: dict[str, Scored] = {}
        self._lock = threading.Lock()

    def _score_missing(self, ids: Sequence[str], cap: int | None) -> int:
        missing = [rid for rid in ids if rid not in self._scored]
        if cap is not None:
            missing = missing[:cap]
        if not missing:
            return 0
        logged = self.log.requests_by_id(missing)
        candidates = [
            Candidate(r.request_id, r.text, r.source_type, r.prediction) for r in logged if len(r.prediction) == 6
        ]
        for scored in score_candidates(candidates, self.read, self.index):
            self._scored[scored.id] = scored
        return len(candidates)

    def warm(self) -> int:
        """Score every request waiting for review now (startup); how many were scored."""
        with self._lock:
            return self._score_missing([rid for _, rid in self.log.queue_ids()], None)

    def next(self, limit: int, reviewer: str | None = None) -> tuple[list[Scored], int]:
        """The next ``limit`` requests to review, and how many wait in all."""
        with self._lock:
            ids = [rid for _, rid in self.log.queue_ids(reviewer)]  # newest first: the cap scores the newest
            self._score_missing(ids, self.score_cap)
            ready = [self._scored[rid] for rid in ids if rid in self._scored]
        return rank(ready, limit), len(ids)

    def reason(self, request_id: str) -> str | None:
        scored = self._scored.get(request_id)
        return scored.reason if scored else None


class ApiError(HTTPException):
    """Answered as ``{"error": detail}``."""


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body too large: {len(raw)} bytes (at most {MAX_BODY_BYTES})")
    if not raw.strip():
        raise ApiError(400, "empty request body: send a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid JSON") from None


def _review_kind(body: Any) -> tuple[str, str, dict[str, int] | None]:
    """``(kind, reviewer, labels)`` from a POST /review body, or a 422 naming what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(
            422, 'expected a JSON object: {"labels": {...}, "reviewer": ...}, {"skip": true} or {"junk": true}'
        )
    reviewer = body.get("reviewer")
    if reviewer is not None and not isinstance(reviewer, str):
        raise ApiError(422, "reviewer must be a string")
    reviewer = (reviewer or "").strip()
    if len(reviewer) > 100:
        raise ApiError(422, "reviewer: at most 100 characters")
    flags = [k for k in ("skip", "junk") if body.get(k) is True]
    has_labels = body.get("labels") is not None
    if len(flags) + has_labels != 1:
        raise ApiError(422, 'send exactly one of "labels": {six dims}, "skip": true or "junk": true')
    if has_labels:
        if not reviewer:
            raise ApiError(422, "reviewer: a name is required with labels")
        return "label", reviewer, body["labels"]
    return flags[0], reviewer or ANONYMOUS, None


def create_review_app(
    log: RequestLog,
    train_texts: Sequence[str],
    *,
    token: str | None = None,
    score_cap: int = DEFAULT_SCORE_CAP,
    warm: bool = True,
) -> Starlette:
    """The review page and API over ``log``; ``app.state.queue`` is its ``ReviewQueue``."""
    queue = ReviewQueue(log, train_texts, score_cap=score_cap)
    expected = f"Bearer {token}".encode() if token else None

    def authorize(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(
                401,
                "this review server needs its token: send Authorization: Bearer <KOTONE_REVIEW_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def queue_items(request: Request) -> Response:
        authorize(request)
        raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError(422, f"limit must be an integer, got {raw!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(422, f"limit must be 1..{MAX_LIMIT}, got {limit}")
        reviewer = request.query_params.get("reviewer") or None
        items, total = await run_in_threadpool(queue.next, limit, reviewer)
        logged = {r.request_id: r for r in await run_in_threadpool(log.requests_by_id, [s.id for s in items])}
        return JSONResponse(
            {
                "items": [
                    {
                        "id": s.id,
                        "text": s.text,
                        "source_type": s.source_type,
                        "prediction": s.prediction,
                        "model_id": logged[s.id].model_id if s.id in logged else None,
                        "reason": s.reason,
                    }
                    for s in items
                ],
                "total": total,
            }
        )

    async def review(request: Request) -> Response:
        authorize(request)
        request_id = request.path_params["request_id"]
        kind, reviewer, labels = _review_kind(await _body(request))

        def store() -> dict[str, Any]:
            return log.add_review(request_id, reviewer, kind, labels, reason=queue.reason(request_id)).model_dump()  # type: ignore[arg-type]

        try:
            stored = await run_in_threadpool(store)
        except ReviewError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return JSONResponse(stored)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm:
            await run_in_threadpool(queue.warm)
        try:
            yield
        finally:
            log.close()

    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/review/queue", queue_items, methods=["GET"]),
            Route("/review/{request_id}", review, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.queue = queue
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)
