"""Writing the request log off the event loop: ``LogWriter`` feeds one background thread from a queue.

A request only builds a small dict and puts it on an in-memory queue (a few microseconds); the writer thread
takes everything queued so far and inserts it in one SQLite transaction, so under load many requests share
one commit. A full disk or a locked log never reaches a request: ``RequestLog.append`` counts the batch as
not logged. If the writer falls far behind (a disk that hangs), items past ``max_pending`` are dropped and
counted as not logged too, so memory stays bounded. ``close`` writes what is still queued before it returns
(the server's shutdown), ``flush`` waits until everything queued so far is written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from kotone_pipeline.services.request_log import RequestLog

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 50_000
MAX_ROWS_PER_COMMIT = 1_000


class LogWriter:
    """One background thread that appends queued items to ``request_log`` in batches."""

    def __init__(self, request_log: RequestLog, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.request_log = request_log
        self.max_pending = max_pending
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending = 0  # items put and not yet written (or given up on)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._warned = False

    @property
    def stats(self) -> Any:
        return self.request_log.stats

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kotone-request-log", daemon=True)
            self._thread.start()

    def submit(self, items: list[dict[str, Any]]) -> None:
        """Queue answered items; never blocks on the disk and never raises."""
        if not items:
            return
        with self._cond:
            if self._closed or self._pending + len(items) > self.max_pending:
                self._drop(len(items), "the request log's writer is behind (or stopped); items dropped")
                return
            self._pending += len(items)
        for item in items:
            self._queue.put(item)
        if self._thread is None:
            self.start()

    def _drop(self, n: int, why: str) -> None:
        stats = self.request_log.stats
        with stats.lock:
            stats.not_logged += n
            stats.last_error = why

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.request_log.close()  # this thread's connection

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_ROWS_PER_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                ok = self.request_log.append(batch)
            except Exception as exc:  # append never raises by contract; a bug here must not kill the thread
                self._drop(len(batch), f"{type(exc).__name__}: {exc}")
                ok = False
            if not ok and not self._warned:
                self._warned = True  # once: a full disk would otherwise log a line per request
                log.warning("request log: %d item(s) not logged: %s", len(batch), self.request_log.stats.last_error)
            with self._cond:
                self._pending -= len(batch)
                self._cond.notify_all()
            if stop:
                return

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every item queued so far is written (or counted as not logged); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout_s)
        self.request_log.close()

    def health(self, enabled: bool = True) -> dict[str, Any]:
        stats = self.request_log.stats
        with stats.lock:
            return {
                "enabled": enabled,
                "logged": stats.logged,
                "not_logged": stats.not_logged,
                "pending": self._pending,
                "last_error": stats.last_error,
            }
