"""The request log: every request the served champion answered, people's feedback and reviews of it.

One SQLite file under ``$KOTONE_HOME/requests/`` in WAL mode, from the standard library: append-only
tables, many readers beside one writer at a time, safe across processes (``kotone serve``, ``kotone
review`` and the cycle's assets each open their own connection). SQLite is enough for one machine's
traffic (thousands of inserts a second); a deployment that serves from several machines points each
at a shared store behind this same interface (see ``deploy/README.md``).

Each table's ``seq`` (SQLite's rowid, only ever growing) is the cursor a cycle cuts at: rows with
``seq`` in (previous cut, this cut] belong to the cycle, so none is counted twice and none skipped.

Logging never fails a request: ``append`` returns False (and counts it) when the disk is full or the
file is locked past a short timeout; the caller answers the request all the same.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from kotone_pipeline.services.request_records import (
    Feedback,
    LoggedRequest,
    Review,
    ReviewError,
    ReviewKind,
    check_labels,
    new_request_id,
    now_iso,
    request_from_row,
    review_from_row,
    reviewed_labels,
)

LOG_DIR = "requests"
LOG_FILE = "requests.sqlite"
BUSY_TIMEOUT_S = 0.25  # a request waits at most this long for a locked log, then is answered unlogged

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL,
    text TEXT NOT NULL,
    source_type TEXT NOT NULL,
    model_id TEXT NOT NULL,
    prediction TEXT NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    at TEXT NOT NULL,
    labels TEXT,
    comment TEXT
);
CREATE TABLE IF NOT EXISTS reviews (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    labels TEXT,
    model_id TEXT,
    prediction_shown TEXT,
    reason TEXT,
    UNIQUE (request_id, reviewer)
);
CREATE INDEX IF NOT EXISTS reviews_request ON reviews (request_id);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
"""


# The columns request_from_row and review_from_row (request_records.py) read, in their order.
_REQUESTS = "SELECT seq, request_id, at, text, source_type, model_id, prediction, latency_ms FROM requests"
_REVIEWS = "SELECT seq, request_id, reviewer, at, kind, labels, model_id, prediction_shown, reason FROM reviews"


@dataclass
class LogStats:
    """What a server reports in /healthz: how many items it logged and how many it could not."""

    logged: int = 0
    not_logged: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"logged": self.logged, "not_logged": self.not_logged, "last_error": self.last_error}


class RequestLog:
    """The log file under ``home``; every method opens what it needs (one connection per thread)."""

    def __init__(
        self,
        home: Path,
        *,
        max_rows: int | None = None,
        max_age_days: float | None = None,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ) -> None:
        """``busy_timeout_s``: how long a write waits for another writer's lock before it counts as not
        logged (short for a server answering requests; a batch import or a test may wait longer)."""
        self.busy_timeout_s = busy_timeout_s
        self.path = Path(home) / LOG_DIR / LOG_FILE
        self.max_rows = max_rows
        self.max_age_days = max_age_days
        self.stats = LogStats()
        self._local = threading.local()
        self._appends_since_trim = 0

    # --- connections ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
            conn.executescript(_SCHEMA)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def exists(self) -> bool:
        return self.path.is_file()

    # --- requests ------------------------------------------------------------------------------
    def append(self, items: Sequence[dict[str, Any]]) -> bool:
        """Log answered items (``request_id, text, source_type, model_id, prediction, latency_ms``, ``at``
        optional). Never raises: a full disk, a locked or unwritable file count as not logged."""
        rows = [_request_row(item) for item in items]
        try:
            with self._write() as conn:
                conn.executemany(
                    _INSERT_REQUEST,
                    rows,
                )
        except (sqlite3.Error, OSError) as exc:
            with self.stats.lock:
                self.stats.not_logged += len(rows)
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.close()  # a broken connection is not reused
            return False
        with self.stats.lock:
            self.stats.logged += len(rows)
            self._appends_since_trim += 1
            trim = self._appends_since_trim >= 500
            if trim:
                self._appends_since_trim = 0
        if trim:
            self.trim()
        return True

    def trim(self) -> int:
        """Drop the oldest requests past the size or age cap (their reviews are kept). Never raises."""
        if self.max_rows is None and self.max_age_days is None:
            return 0
        try:
            with self._write() as conn:
                removed = 0
                if self.max_age_days is not None:
                    cutoff = (datetime.now(UTC) - timedelta(days=self.max_age_days)).isoformat(timespec="milliseconds")
                    removed += conn.execute("DELETE FROM requests WHERE at < ?", (cutoff,)).rowcount
                if self.max_rows is not None:
                    removed += conn.execute(
                        "DELETE FROM requests WHERE seq <= (SELECT MAX(seq) FROM requests) - ?", (self.max_rows,)
                    ).rowcount
                return removed
        except (sqlite3.Error, OSError):
            return 0

    def last_seq(self, table: Literal["requests", "reviews", "feedback"] = "requests") -> int:
        if not self.exists():
            return 0
        row = self._connect().execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()  # noqa: S608
        return int(row[0])

    def requests_between(self, after: int, upto: int) -> list[LoggedRequest]:
        """Requests with ``after < seq <= upto``, oldest first."""
        if not self.exists():
            return []
        rows = self._connect().execute(
            f"{_REQUESTS} WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after, upto),
        )
        return [request_from_row(row) for row in rows]

    def request(self, request_id: str) -> LoggedRequest | None:
        if not self.exists():
            return None
        row = (
            self._connect()
            .execute(
                f"{_REQUESTS} WHERE request_id = ?",
                (request_id,),
            )
            .fetchone()
        )
        return request_from_row(row) if row else None

    def unreviewed(self, reviewer: str | None = None, limit: int | None = None) -> list[LoggedRequest]:
        """Requests nobody (or, with ``reviewer``, this reviewer) has reviewed, newest first."""
        if not self.exists():
            return []
        where = "NOT EXISTS (SELECT 1 FROM reviews v WHERE v.request_id = r.request_id"
        where += " AND v.reviewer = ?)" if reviewer else ")"
        sql = (
            f"{_REQUESTS} r "
            f"WHERE {where} ORDER BY seq DESC"  # noqa: S608 - no user input in the SQL text
        )
        params: tuple[Any, ...] = (reviewer,) if reviewer else ()
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return [request_from_row(row) for row in self._connect().execute(sql, params)]

    def count_unreviewed(self) -> int:
        """Logged requests nobody has reviewed yet (0 when there is no log: this never creates one)."""
        if not self.exists():
            return 0
        sql = (
            "SELECT COUNT(*) FROM requests r WHERE NOT EXISTS "
            "(SELECT 1 FROM reviews v WHERE v.request_id = r.request_id)"
        )
        return int(self._connect().execute(sql).fetchone()[0])

    def queue_ids(self, reviewer: str | None = None) -> list[tuple[int, str]]:
        """``(seq, request_id)`` of the requests still to review, newest first: nobody labelled them or
        called them junk, and ``reviewer`` (if given) has not skipped them either."""
        if not self.exists():
            return []
        sql = (
            "SELECT seq, request_id FROM requests r WHERE NOT EXISTS (SELECT 1 FROM reviews v "
            "WHERE v.request_id = r.request_id AND (v.kind != 'skip' OR v.reviewer = ?)) ORDER BY seq DESC"
        )
        return [(int(a), str(b)) for a, b in self._connect().execute(sql, ((reviewer or "").strip(),))]

    def requests_by_id(self, request_ids: Sequence[str]) -> list[LoggedRequest]:
        """The logged requests with these ids (unknown ids left out), oldest first."""
        if not self.exists() or not request_ids:
            return []
        out: list[LoggedRequest] = []
        ids = list(request_ids)
        for start in range(0, len(ids), 500):  # SQLite caps the number of placeholders
            chunk = ids[start : start + 500]
            rows = self._connect().execute(
                f"{_REQUESTS} WHERE request_id IN ({','.join('?' * len(chunk))})",  # noqa: S608 - placeholders only
                tuple(chunk),
            )
            out.extend(request_from_row(row) for row in rows)
        return sorted(out, key=lambda r: r.seq)

    def ids_by_text(self) -> dict[str, str]:
        """Each logged text's newest request id (for an import that names a request by its text)."""
        if not self.exists():
            return {}
        return {
            text: rid for text, rid in self._connect().execute("SELECT text, request_id FROM requests ORDER BY seq")
        }

    def import_reviews(self, new_requests: Sequence[dict[str, Any]], reviews: Sequence[dict[str, Any]]) -> None:
        """Append requests and reviews in one transaction: all of them or, on any conflict, none.

        ``new_requests`` as for ``append``; ``reviews``: ``request_id, reviewer, kind, labels?, at?,
        reason?`` (the prediction shown is the logged one). Raises ``ReviewError`` (409) when a reviewer
        already reviewed a request, (404) when a review names a request that is neither logged nor new."""
        new_by_id = {item["request_id"]: item for item in new_requests}
        known = {r.request_id: r for r in self.requests_by_id([v["request_id"] for v in reviews])}
        rows = []
        for review in reviews:
            request_id = review["request_id"]
            logged = known.get(request_id)
            if logged is not None:
                model_id, shown = logged.model_id, logged.prediction
            elif request_id in new_by_id:
                model_id, shown = new_by_id[request_id]["model_id"], new_by_id[request_id]["prediction"]
            else:
                raise ReviewError(f"unknown request id {request_id!r}", status=404)
            labels = check_labels(review["labels"]) if review["kind"] == "label" else None
            rows.append(
                (
                    request_id,
                    review["reviewer"],
                    review.get("at") or now_iso(),
                    review["kind"],
                    json.dumps(labels) if labels else None,
                    model_id,
                    json.dumps(shown) if shown is not None else None,
                    review.get("reason"),
                )
            )
        try:
            with self._write() as conn:
                conn.executemany(
                    _INSERT_REQUEST,
                    [_request_row(item) for item in new_requests],
                )
                conn.executemany(
                    "INSERT INTO reviews (request_id, reviewer, at, kind, labels, model_id, prediction_shown, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.IntegrityError as exc:
            raise ReviewError(
                f"nothing imported: {exc} (a reviewer's second review of a request?)", status=409
            ) from None

    def count(self, table: Literal["requests", "reviews", "feedback"] = "requests") -> int:
        if not self.exists():
            return 0
        return int(self._connect().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608

    # --- feedback and reviews ------------------------------------------------------------------
    def add_feedback(self, request_id: str, labels: dict[str, int] | None, comment: str | None) -> Feedback:
        if self.request(request_id) is None:
            raise ReviewError(f"unknown request_id {request_id!r}", status=404)
        checked = check_labels(labels) if labels is not None else None
        at = now_iso()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO feedback (request_id, at, labels, comment) VALUES (?, ?, ?, ?)",
                (request_id, at, json.dumps(checked) if checked else None, comment),
            )
        return Feedback(seq=int(cur.lastrowid or 0), request_id=request_id, at=at, labels=checked, comment=comment)

    def add_review(
        self,
        request_id: str,
        reviewer: str,
        kind: ReviewKind,
        labels: dict[str, int] | None = None,
        reason: str | None = None,
        at: str | None = None,
    ) -> Review:
        """Store one person's review; a second review of a request by the same reviewer is refused (409)."""
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise ReviewError("reviewer: a name is required")
        logged = self.request(request_id)
        if logged is None:
            raise ReviewError(f"unknown request id {request_id!r}", status=404)
        checked = check_labels(labels) if kind == "label" else None
        at = at or now_iso()
        try:
            with self._write() as conn:
                cur = conn.execute(
                    "INSERT INTO reviews (request_id, reviewer, at, kind, labels, model_id, prediction_shown, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request_id,
                        reviewer,
                        at,
                        kind,
                        json.dumps(checked) if checked else None,
                        logged.model_id,
                        json.dumps(logged.prediction),
                        reason,
                    ),
                )
        except sqlite3.IntegrityError:
            raise ReviewError(f"{reviewer} already reviewed {request_id}", status=409) from None
        return Review(
            seq=int(cur.lastrowid or 0),
            request_id=request_id,
            reviewer=reviewer,
            at=at,
            kind=kind,
            labels=checked,
            model_id=logged.model_id,
            prediction_shown=logged.prediction,
            reason=reason,
        )

    def reviews_between(self, after: int, upto: int) -> list[Review]:
        if not self.exists():
            return []
        rows = self._connect().execute(
            f"{_REVIEWS} WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after, upto),
        )
        return [review_from_row(row) for row in rows]

    def reviews_of(self, request_ids: Sequence[str]) -> list[Review]:
        if not self.exists() or not request_ids:
            return []
        marks = ",".join("?" * len(request_ids))
        rows = self._connect().execute(
            f"{_REVIEWS} WHERE request_id IN ({marks}) ORDER BY seq",  # noqa: S608 - placeholders only
            tuple(request_ids),
        )
        return [review_from_row(row) for row in rows]

    def feedback_between(self, after: int, upto: int) -> list[Feedback]:
        if not self.exists():
            return []
        rows = self._connect().execute(
            "SELECT seq, request_id, at, labels, comment FROM feedback WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after, upto),
        )
        return [
            Feedback(seq=r[0], request_id=r[1], at=r[2], labels=json.loads(r[3]) if r[3] else None, comment=r[4])
            for r in rows
        ]


_INSERT_REQUEST = (
    "INSERT INTO requests (request_id, at, text, source_type, model_id, prediction, latency_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _request_row(item: dict[str, Any]) -> tuple[Any, ...]:
    """An answered item as the requests table's row (``at`` defaults to now)."""
    return (
        item["request_id"],
        item.get("at") or now_iso(),
        item["text"],
        item["source_type"],
        item["model_id"],
        json.dumps(item["prediction"], separators=(",", ":")),
        float(item["latency_ms"]),
    )


__all__ = [
    "Feedback",
    "LoggedRequest",
    "RequestLog",
    "Review",
    "ReviewError",
    "check_labels",
    "new_request_id",
    "reviewed_labels",
]
