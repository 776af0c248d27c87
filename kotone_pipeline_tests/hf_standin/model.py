"""The stand-in's data: repos with content-addressed commits, job records, faults, recorded requests."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

# Hourly prices (USD) from hf_api_notes.md; the stand-in serves them on /api/jobs/hardware per minute.
FLAVOR_PRICES_USD_PER_HOUR = {
    "cpu-basic": 0.01,
    "cpu-upgrade": 0.03,
    "t4-small": 0.40,
    "t4-medium": 0.60,
    "l4x1": 0.80,
    "a10g-small": 1.00,
    "a10g-large": 1.50,
    "l40sx1": 1.80,
    "a100-large": 2.50,
    "h200": 5.00,
}
RECORDED = Path(__file__).resolve().parent / "recorded"
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".gguf", ".zip")
LFS_THRESHOLD_BYTES = 10 * 1024
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HttpError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.extra = extra  # more fields of the JSON error body (the Hub's 409 on create carries the url)


# --- repositories -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def git_oid(self) -> str:
        return git_blob_oid(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    date: float
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: float
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        oid = self.branches.get(revision, revision)
        commit = self.commits.get(oid)
        if commit is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit


def make_commit(parent: Commit | None, files: dict[str, Blob], title: str, description: str, date: float) -> Commit:
    """A commit id is the sha1 of what it holds (parent, message, each path and blob id): real, stable."""
    digest = hashlib.sha1()
    digest.update(json.dumps([parent.oid if parent else None, title, description]).encode())
    for path in sorted(files):
        digest.update(f"\n{path}\0{files[path].git_oid}".encode())
    return Commit(digest.hexdigest(), parent.oid if parent else None, title, description, date, dict(files))


# --- jobs -------------------------------------------------------------------------------------------------


def recorded(name: str) -> Any:
    """A recorded real answer of the Jobs API (``recorded/README.md`` says where each comes from)."""
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def jobs_hardware() -> list[dict[str, Any]]:
    """``GET /api/jobs/hardware``: the recorded entries as they are; a flavor without a recording gets an entry
    of the recorded entry's shape (same keys, per-minute price, micro-USD rounded as recorded) with its price
    from ``hf_api_notes.md``."""
    entries = recorded("jobs_hardware.json")
    have = {entry["name"] for entry in entries}
    template = entries[0]
    for name, price in FLAVOR_PRICES_USD_PER_HOUR.items():
        if name not in have:
            per_minute = price / 60
            entries.append(
                {
                    **template,
                    "name": name,
                    "prettyName": name,
                    "cpu": "n/a",
                    "ram": "n/a",
                    "ephemeralStorage": "n/a",
                    "unitCostMicroUSD": round(per_minute * 1e6),
                    "unitCostUSD": round(per_minute, 6),
                }
            )
    return entries


def owner_id(namespace: str) -> str:
    """A 24-hex id, as the recorded answers' owner ids are."""
    return hashlib.sha1(namespace.encode()).hexdigest()[:24]


@dataclass
class JobRecord:
    id: str
    namespace: str
    spec: dict[str, Any]
    created: float
    stage: str = "SCHEDULING"
    message: str | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    cancel_requested: bool = False

    def as_json(self, now: float) -> dict[str, Any]:
        """The JobInfo fields of hf_api_notes.md; like those, no ``timeoutSeconds``: the client cannot count
        on the answer echoing the timeout it sent (the budget uses its own record of it)."""
        spec = self.spec
        end = self.finished if self.finished is not None else now
        scheduling_end = self.started if self.started is not None else (self.finished or now)
        body: dict[str, Any] = {
            "id": self.id,
            "createdAt": _iso(self.created),
            "startedAt": _iso(self.started) if self.started is not None else None,
            "finishedAt": _iso(self.finished) if self.finished is not None else None,
            "command": spec.get("command"),
            "arguments": spec.get("arguments", []),
            "environment": spec.get("environment", {}),
            # Like the Hub, never echo secret values: only their names.
            "secrets": {key: None for key in spec.get("secrets") or {}},
            "flavor": spec.get("flavor"),
            "labels": spec.get("labels"),
            "status": {"stage": self.stage, "message": self.message},
            "durations": {
                "schedulingSecs": int(max(0.0, scheduling_end - self.created)),
                "runningSecs": int(max(0.0, end - self.started)) if self.started is not None else None,
                "totalSecs": int(max(0.0, end - self.created)),
            },
            "owner": {"id": owner_id(self.namespace), "name": self.namespace, "type": "user"},
            "initiator": {"type": "user", "id": owner_id(self.namespace), "name": self.namespace},
        }
        # As recorded (recorded/job_info.json): the image one is set, the other one null.
        body["dockerImage"] = spec.get("dockerImage")
        body["spaceId"] = spec.get("spaceId")
        return body


# --- faults and request log -------------------------------------------------------------------------------


@dataclass
class Fault:
    route: str
    when: str  # "before": answer instead of handling; "after": handle, then answer with this fault
    status: int | None
    delay_s: float
    remaining: int
    message: str | None = None  # error text in the JSON body (e.g. one that echoes a secret)
    skip: int = 0  # matching requests to let through before the fault starts


@dataclass
class RecordedRequest:
    """Recorded on arrival (a request the client gave up on still counts); ``status`` once answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    route: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class Faults:
    """Per-route faults, consumed one request at a time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        route: str,
        *,
        status: int | None = None,
        delay_s: float = 0.0,
        times: int = 1,
        when: str = "before",
        message: str | None = None,
        skip: int = 0,
    ) -> None:
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        with self._lock:
            self._faults.append(Fault(route, when, status, delay_s, times, message, skip))

    def fail(self, route: str, status: int = 503, times: int = 1, message: str | None = None, skip: int = 0) -> None:
        """Answer ``status`` without handling the request (after letting ``skip`` requests through)."""
        self.add(route, status=status, times=times, message=message, skip=skip)

    def delay(self, route: str, seconds: float, times: int = 1) -> None:
        """Wait before handling (a client with a shorter read timeout sees a timeout)."""
        self.add(route, delay_s=seconds, times=times)

    def fail_after(self, route: str, status: int = 500, times: int = 1, delay_s: float = 0.0) -> None:
        """Handle the request (e.g. the job IS created), then answer ``status`` (or just wait ``delay_s``)."""
        self.add(route, status=status, delay_s=delay_s, times=times, when="after")

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, route: str, when: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.route == route and fault.when == when and fault.remaining > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    return fault
        return None
