"""A local stand-in for the Hugging Face Hub and Jobs HTTP API (the subset this project uses).

It speaks the contract in ``shared/reference/hf_api_notes.md`` well enough for the real ``huggingface_hub``
client: repos with real, immutable commit shas (sha1 of content), LFS uploads, ``resolve`` downloads, and Jobs
that really run as local subprocesses. Faults can be injected per route, every request is recorded, and the
server clock can be moved forward so that durations (stuck in SCHEDULING, cost) need no sleeping.

Run it by hand: ``python -m kotone_pipeline_tests.hf_standin.server --port 8765 --token hf_dev``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

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
TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".pt", ".gguf", ".zip")
LFS_THRESHOLD_BYTES = 10 * 1024
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
GITATTRIBUTES = (
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)


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


def make_commit(
    parent: Commit | None, files: dict[str, Blob], title: str, description: str, date: float
) -> Commit:
    """A commit id is the sha1 of what it holds (parent, message, each path and blob id): real, stable."""
    digest = hashlib.sha1()
    digest.update(json.dumps([parent.oid if parent else None, title, description]).encode())
    for path in sorted(files):
        digest.update(f"\n{path}\0{files[path].git_oid}".encode())
    return Commit(digest.hexdigest(), parent.oid if parent else None, title, description, date, dict(files))


# --- jobs -------------------------------------------------------------------------------------------------


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
            "timeoutSeconds": spec.get("timeoutSeconds"),
            "status": {"stage": self.stage, "message": self.message},
            "durations": {
                "schedulingSecs": int(max(0.0, scheduling_end - self.created)),
                "runningSecs": int(max(0.0, end - self.started)) if self.started is not None else None,
                "totalSecs": int(max(0.0, end - self.created)),
            },
            "owner": {"id": f"id-{self.namespace}", "name": self.namespace, "type": "user"},
        }
        if "dockerImage" in spec:
            body["dockerImage"] = spec["dockerImage"]
        if "spaceId" in spec:
            body["spaceId"] = spec["spaceId"]
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

    def fail(
        self, route: str, status: int = 503, times: int = 1, message: str | None = None, skip: int = 0
    ) -> None:
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


# --- the server state -------------------------------------------------------------------------------------


class HubStandIn:
    """In-memory Hub + Jobs. ``start()`` serves it on 127.0.0.1 (ephemeral port by default)."""

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        *,
        port: int = 0,
        jobs_page_size: int = 50,
        workdir: Path | None = None,
    ) -> None:
        self.tokens = dict(tokens or {"hf_standin_token": "kotone-bot"})
        self.port = port
        self.jobs_page_size = jobs_page_size
        self.faults = Faults()
        self.hold_scheduling = False  # jobs stay in SCHEDULING (scarce hardware) until released
        self.clock_offset_s = 0.0
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.jobs: dict[str, JobRecord] = {}
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hf-standin-"))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._job_threads: list[threading.Thread] = []

    # -- lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("stand-in not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HubStandIn:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="hf-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel_requested = True
            if job.process is not None and job.process.poll() is None:
                job.process.kill()
        for thread in self._job_threads:
            thread.join(timeout=5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clock
    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance(self, seconds: float) -> None:
        """Move the server clock forward (durations, timestamps, the Date header)."""
        self.clock_offset_s += seconds

    # -- request log
    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, route: str, *, first_page_only: bool = False) -> int:
        return sum(
            1 for r in self.requests if r.route == route and not (first_page_only and "cursor" in r.query)
        )

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- auth
    def user_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.tokens.get(authorization[len("Bearer ") :].strip())

    # -- repos
    def create_repo(self, repo_type: str, repo_id: str, private: bool = True, base: str = "") -> Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                url = f"{base or self.url}/{URL_PREFIX[repo_type]}{repo_id}"
                raise HttpError(409, "You already created this repo", url=url)
            now = self.now()
            repo = Repo(repo_type, repo_id, private, now)
            first = make_commit(
                None, {".gitattributes": Blob(GITATTRIBUTES, False)}, "initial commit", "", now
            )
            repo.commits[first.oid] = first
            repo.branches["main"] = first.oid
            self.repos[key] = repo
            return repo

    def repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            status = 401 if user is None else 404
            raise HttpError(status, f"Repository Not Found for url: {repo_type}s/{repo_id}", "RepoNotFound")
        return repo

    def file_at(self, repo_type: str, repo_id: str, revision: str, path: str) -> tuple[Commit, Blob]:
        """Direct read for tests (no auth)."""
        commit = self.repos[(repo_type, repo_id)].resolve(revision)
        return commit, commit.files[path]

    # -- jobs
    def create_job(self, namespace: str, spec: dict[str, Any], *, run: bool = True) -> JobRecord:
        flavor = spec.get("flavor") or "cpu-basic"
        if flavor not in FLAVOR_PRICES_USD_PER_HOUR:
            raise HttpError(400, f"Unknown flavor {flavor!r}")
        if not isinstance(spec.get("command"), list) or not spec["command"]:
            raise HttpError(400, "command must be a non-empty list")
        labels = spec.get("labels") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise HttpError(400, "labels must map strings to strings")
        job = JobRecord(
            id=uuid.uuid4().hex[:24], namespace=namespace, spec={**spec, "flavor": flavor}, created=self.now()
        )
        with self._lock:
            self.jobs[job.id] = job
        if run:
            thread = threading.Thread(target=self._run_job, args=(job,), name=f"job-{job.id}", daemon=True)
            self._job_threads.append(thread)
            thread.start()
        return job

    def add_job(
        self,
        namespace: str,
        labels: dict[str, str],
        *,
        stage: str = "RUNNING",
        flavor: str = "a10g-small",
        age_s: float = 60.0,
        running_s: float | None = None,
        timeout_s: int = 1800,
    ) -> JobRecord:
        """Put a job straight into the store (no subprocess): benchmarks and bookkeeping tests."""
        spec = {
            "command": ["true"],
            "flavor": flavor,
            "labels": labels,
            "timeoutSeconds": timeout_s,
            "dockerImage": "python:3.12",
        }
        job = self.create_job(namespace, spec, run=False)
        now = self.now()
        job.created = now - age_s
        job.stage = stage
        if stage != "SCHEDULING":
            job.started = now - (running_s if running_s is not None else age_s / 2)
        if stage in TERMINAL:
            job.finished = now
        return job

    def job(self, namespace: str, job_id: str) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None or job.namespace != namespace:
            raise HttpError(404, f"Job {job_id} not found")
        return job

    def cancel_job(self, job: JobRecord) -> None:
        with self._lock:
            if job.stage in TERMINAL:
                return
            job.cancel_requested = True
            job.stage = "CANCELED"
            job.message = "Canceled by user"
            job.finished = self.now()
            process = job.process
        if process is not None and process.poll() is None:
            process.kill()

    def _log(self, job: JobRecord, line: str) -> None:
        with self._lock:
            job.logs.append((_iso(self.now()), line))

    def _run_job(self, job: JobRecord) -> None:
        while self.hold_scheduling and not job.cancel_requested:
            time.sleep(0.02)
        with self._lock:
            if job.cancel_requested:
                return
            job.stage = "RUNNING"
            job.started = self.now()
        self._log(job, f"===== Job started at {_iso(self.now())} =====")
        job_dir = self.workdir / "jobs" / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        env = self._job_env(job, job_dir)
        try:
            argv = self._argv(job, job_dir, env)
        except RuntimeError as exc:
            self._log(job, f"error: {exc}")
            self._finish(job, 2)
            return
        try:
            process = subprocess.Popen(
                argv,
                cwd=job_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            self._log(job, f"error: cannot start {argv[0]}: {exc}")
            self._finish(job, 127)
            return
        with self._lock:
            job.process = process
            if job.cancel_requested:
                process.kill()
        timeout_s = float(job.spec.get("timeoutSeconds") or 1800)
        watchdog = threading.Thread(target=self._watch_timeout, args=(job, process, timeout_s), daemon=True)
        watchdog.start()
        assert process.stdout is not None
        for line in process.stdout:
            self._log(job, line.rstrip("\n"))
        self._finish(job, process.wait())

    def _watch_timeout(self, job: JobRecord, process: subprocess.Popen[str], timeout_s: float) -> None:
        while process.poll() is None:
            if job.started is not None and self.now() - job.started > timeout_s:
                job.message = f"Job timeout after {int(timeout_s)}s"
                process.kill()
                return
            time.sleep(0.05)

    def _finish(self, job: JobRecord, exit_code: int) -> None:
        with self._lock:
            job.exit_code = exit_code
            if job.stage in TERMINAL:  # canceled meanwhile
                return
            job.finished = self.now()
            if exit_code == 0:
                job.stage = "COMPLETED"
            else:
                job.stage = "ERROR"
                job.message = job.message or f"Job failed with exit code: {exit_code}"

    def _job_env(self, job: JobRecord, job_dir: Path) -> dict[str, str]:
        """A clean machine: the job's env and secrets, plus what a uv image would have."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(job_dir),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "HF_HOME": str(job_dir / ".hf"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "JOB_ID": job.id,
        }
        env.update({k: str(v) for k, v in (job.spec.get("environment") or {}).items()})
        env.update({k: str(v) for k, v in (job.spec.get("secrets") or {}).items()})
        return env

    def _argv(self, job: JobRecord, job_dir: Path, env: dict[str, str]) -> list[str]:
        """``uv run <url> args`` runs the downloaded script with this interpreter (deps preinstalled here)."""
        command = [str(c) for c in job.spec["command"]] + [str(a) for a in job.spec.get("arguments") or []]
        if command[:2] == ["uv", "run"]:
            rest = command[2:]
            while rest and rest[0].startswith("--"):
                flag = rest.pop(0)
                if flag in ("--with", "--python", "--index-url", "--extra-index-url") and rest:
                    rest.pop(0)
            if not rest:
                raise RuntimeError("uv run: no script given")
            script, args = rest[0], rest[1:]
            if script.startswith(("http://", "https://")):
                script = str(self._fetch_script(script, job_dir, env.get("HF_TOKEN")))
            return [sys.executable, script, *args]
        if command[0] in ("python", "python3"):
            return [sys.executable, *command[1:]]
        return command

    def _fetch_script(self, url: str, job_dir: Path, token: str | None) -> Path:
        # uv authenticates Hub URLs with HF_TOKEN (astral-sh/uv#14797); do the same, over HTTP, to ourselves.
        if not url.startswith(self.url):
            raise RuntimeError(f"uv run: cannot reach {url} (the stand-in has no network)")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"uv run: failed to fetch script: HTTP {exc.code}") from None
        target = job_dir / (Path(urlsplit(url).path).name or "script.py")
        target.write_bytes(data)
        return target

    def wait_jobs(self, timeout_s: float = 30.0) -> None:
        """Block until every started job's runner thread has finished (tests)."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._job_threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


# --- HTTP handling ----------------------------------------------------------------------------------------

_REPO_API = re.compile(r"^/api/(models|datasets|spaces)/([^/]+)/([^/]+)(/.*)?$")
_JOBS_API = re.compile(r"^/api/jobs/([^/]+)(?:/([^/]+))?(?:/(cancel|logs))?$")
_LFS_BATCH = re.compile(r"^/(datasets/|spaces/)?([^/]+)/([^/]+)\.git/info/lfs/objects/batch$")
_RESOLVE = re.compile(r"^/(datasets/|spaces/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), headers or {})


class Router:
    """Maps (method, path) to the stand-in's behaviour. Returns (route name, handler)."""

    def __init__(self, hub: HubStandIn) -> None:
        self.hub = hub

    def route(self, method: str, path: str) -> tuple[str, Any]:
        if path == "/api/whoami-v2":
            return "whoami", self.whoami
        if path == "/api/agent-harnesses":
            return "agent_harnesses", lambda ctx: _json([])
        if path == "/api/validate-yaml":
            return "validate_yaml", lambda ctx: _json({"errors": [], "warnings": []})
        if path == "/api/repos/create" and method == "POST":
            return "repo.create", self.repo_create
        if path == "/api/jobs/hardware":
            return "jobs.hardware", self.jobs_hardware
        if m := _JOBS_API.match(path):
            ns, job_id, action = m.groups()
            if job_id is None:
                return (
                    ("jobs.create", self.jobs_create) if method == "POST" else ("jobs.list", self.jobs_list)
                )
            if action == "cancel":
                return "jobs.cancel", self.jobs_cancel
            if action == "logs":
                return "jobs.logs", self.jobs_logs
            return "jobs.inspect", self.jobs_inspect
        if m := _REPO_API.match(path):
            sub = m.group(4) or ""
            for prefix, route in (
                ("/revision/", "repo.info"),
                ("/preupload/", "repo.preupload"),
                ("/commit/", "repo.commit"),
                ("/tree/", "repo.tree"),
                ("/paths-info/", "repo.paths_info"),
                ("/branch/", "repo.branch"),
                ("/refs", "repo.refs"),
            ):
                if sub.startswith(prefix) or (prefix == "/refs" and sub == "/refs"):
                    return route, getattr(self, route.replace(".", "_"))
            if sub == "":
                return "repo.info", self.repo_info
        if _LFS_BATCH.match(path):
            return "lfs.batch", self.lfs_batch
        if path.startswith("/_standin/lfs/"):
            return "lfs.put", self.lfs_put
        if _RESOLVE.match(path):
            return "resolve", self.resolve
        if path.startswith("/_standin/"):
            return "control", self.control
        return "unknown", lambda ctx: _json({"error": f"stand-in: no route for {method} {path}"}, 404)

    # -- helpers
    def _need_user(self, ctx: Ctx) -> str:
        if ctx.user is None:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return ctx.user

    def _repo_from_api(self, ctx: Ctx) -> tuple[Repo, str]:
        m = _REPO_API.match(ctx.path)
        assert m is not None
        repo_type = REPO_TYPES[m.group(1)]
        repo = self.hub.repo(repo_type, f"{m.group(2)}/{m.group(3)}", ctx.user)
        return repo, m.group(4) or ""

    # -- identity
    def whoami(self, ctx: Ctx) -> Reply:
        user = self._need_user(ctx)
        return _json({"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})

    # -- repos
    def repo_create(self, ctx: Ctx) -> Reply:
        user = self._need_user(ctx)
        body = ctx.json()
        namespace = body.get("organization") or user
        repo_type = body.get("type") or "model"
        private = body.get("visibility", "private" if body.get("private") else "public") == "private"
        self.hub.create_repo(repo_type, f"{namespace}/{body['name']}", private=private, base=ctx.base)
        url = f"{ctx.base}/{URL_PREFIX[repo_type]}{namespace}/{body['name']}"
        return _json({"url": url, "name": f"{namespace}/{body['name']}"})

    def repo_info(self, ctx: Ctx) -> Reply:
        repo, sub = self._repo_from_api(ctx)
        revision = unquote(sub[len("/revision/") :]) if sub.startswith("/revision/") else "main"
        commit = repo.resolve(revision)
        return _json(
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "createdAt": _iso(repo.created),
                "lastModified": _iso(commit.date),
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            }
        )

    def repo_refs(self, ctx: Ctx) -> Reply:
        repo, _ = self._repo_from_api(ctx)
        branches = [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo.branches.items()
        ]
        return _json({"branches": branches, "converts": [], "tags": []})

    def repo_branch(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        repo, sub = self._repo_from_api(ctx)
        branch = unquote(sub[len("/branch/") :])
        if ctx.method == "DELETE":
            repo.branches.pop(branch, None)
            return _json({})
        if not re.fullmatch(r"[A-Za-z0-9._-]+", branch):
            raise HttpError(400, f"Invalid branch name {branch!r}")
        starting = (ctx.json() or {}).get("startingPoint") or "main"
        with self.hub._lock:
            if branch in repo.branches:
                raise HttpError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = repo.resolve(starting).oid
        return _json({})

    def repo_preupload(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        repo, sub = self._repo_from_api(ctx)
        revision = unquote(sub[len("/preupload/") :])
        files = repo.resolve(revision).files if revision in repo.branches else {}
        answer = []
        for item in ctx.json().get("files", []):
            path, size = item["path"], int(item["size"])
            # datasets deletes its temporary parquet shards after preupload: large files must go through LFS.
            mode = "lfs" if size > LFS_THRESHOLD_BYTES or path.endswith(LFS_SUFFIXES) else "regular"
            existing = files.get(path)
            oid = None
            if existing is not None and existing.lfs == (mode == "lfs"):
                oid = existing.sha256 if existing.lfs else existing.git_oid
            answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return _json({"files": answer})

    def repo_commit(self, ctx: Ctx) -> Reply:
        user = self._need_user(ctx)
        repo, sub = self._repo_from_api(ctx)
        revision = unquote(sub[len("/commit/") :])
        lines = [json.loads(line) for line in ctx.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HttpError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        with self.hub._lock:
            if revision not in repo.branches:
                raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            parent = repo.resolve(revision)
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    files[value["path"]] = Blob(base64.b64decode(value["content"]), False)
                elif key == "lfsFile":
                    data = self.hub.lfs_objects.get(value["oid"])
                    if data is None:
                        raise HttpError(400, f"LFS object {value['oid']} was not uploaded")
                    files[value["path"]] = Blob(data, True)
                elif key == "deletedFile":
                    if value["path"] not in files:
                        raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                    del files[value["path"]]
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                else:
                    raise HttpError(400, f"unknown commit operation {key!r}")
            commit = make_commit(
                parent, files, header.get("summary", ""), header.get("description", ""), self.hub.now()
            )
            repo.commits[commit.oid] = commit
            repo.branches[revision] = commit.oid
        url = f"{ctx.base}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return _json({"commitUrl": url, "commitOid": commit.oid, "success": True, "author": user})

    def _file_entry(self, path: str, blob: Blob, commit: Commit | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(blob.data), "oid": blob.git_oid}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 132}
        if commit is not None:
            entry["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": _iso(commit.date)}
        return entry

    def _last_commit(self, repo: Repo, head: Commit, path: str) -> Commit:
        """The newest commit (walking parents) that changed ``path``."""
        current = head
        while current.parent is not None:
            parent = repo.commits[current.parent]
            if parent.files.get(path) != current.files.get(path):
                return current
            current = parent
        return current

    def repo_paths_info(self, ctx: Ctx) -> Reply:
        repo, sub = self._repo_from_api(ctx)
        commit = repo.resolve(unquote(sub[len("/paths-info/") :]))
        form = ctx.form()
        expand = (form.get("expand") or ["false"])[0].lower() == "true"
        answer = []
        for path in form.get("paths", []):
            if path in commit.files:
                last = self._last_commit(repo, commit, path) if expand else None
                answer.append(self._file_entry(path, commit.files[path], last))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                answer.append(
                    {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
                )
        return _json(answer)

    def repo_tree(self, ctx: Ctx) -> Reply:
        repo, sub = self._repo_from_api(ctx)
        rest = sub[len("/tree/") :]
        revision, _, folder = rest.partition("/")
        commit = repo.resolve(unquote(revision))
        folder = unquote(folder).strip("/")
        recursive = (ctx.query.get("recursive") or ["false"])[0].lower() == "true"
        prefix = f"{folder}/" if folder else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            if recursive or "/" not in rel:
                entries[path] = self._file_entry(path, blob, None)
            if "/" in rel:
                parts = rel.split("/")[:-1]
                depth = len(parts) if recursive else 1
                for i in range(1, depth + 1):
                    sub_dir = prefix + "/".join(parts[:i])
                    entries.setdefault(
                        sub_dir,
                        {
                            "type": "directory",
                            "path": sub_dir,
                            "oid": hashlib.sha1(sub_dir.encode()).hexdigest(),
                        },
                    )
        if folder and not entries:
            raise HttpError(404, f"{folder} does not exist on {revision}", "EntryNotFound")
        return _json(list(entries.values()))

    # -- LFS
    def lfs_batch(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        objects = []
        for obj in ctx.json().get("objects", []):
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs_objects:
                item["actions"] = {"upload": {"href": f"{ctx.base}/_standin/lfs/{obj['oid']}"}}
            objects.append(item)
        return Reply(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {},
            "application/vnd.git-lfs+json",
        )

    def lfs_put(self, ctx: Ctx) -> Reply:
        oid = ctx.path.rsplit("/", 1)[1]
        if hashlib.sha256(ctx.body).hexdigest() != oid:
            raise HttpError(400, "LFS object does not match its oid")
        with self.hub._lock:
            self.hub.lfs_objects[oid] = ctx.body
        return Reply(200, b"")

    # -- downloads
    def resolve(self, ctx: Ctx) -> Reply:
        m = _RESOLVE.match(ctx.path)
        assert m is not None
        prefix, ns, name, revision, path = m.groups()
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        repo = self.hub.repo(repo_type, f"{ns}/{name}", ctx.user)
        commit = repo.resolve(unquote(revision))
        blob = commit.files.get(unquote(path))
        if blob is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{blob.sha256}"'
            headers["X-Linked-Size"] = str(len(blob.data))
        return Reply(200, blob.data, headers, "application/octet-stream")

    # -- jobs
    def jobs_hardware(self, ctx: Ctx) -> Reply:
        return _json(
            [
                {
                    "name": name,
                    "prettyName": name,
                    "cpu": "n/a",
                    "ram": "n/a",
                    "accelerator": None,
                    "unitCostMicroUSD": round(price / 60 * 1e6),
                    "unitCostUSD": price / 60,
                    "unitLabel": "minute",
                }
                for name, price in FLAVOR_PRICES_USD_PER_HOUR.items()
            ]
        )

    def jobs_create(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace = _JOBS_API.match(ctx.path).group(1)  # type: ignore[union-attr]
        job = self.hub.create_job(namespace, ctx.json())
        return _json(job.as_json(self.hub.now()))

    def jobs_list(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace = _JOBS_API.match(ctx.path).group(1)  # type: ignore[union-attr]
        labels = [item.partition("=") for item in ctx.query.get("label", [])]
        stages = {s.upper() for s in ctx.query.get("stage", [])}
        now = self.hub.now()
        with self.hub._lock:
            jobs = [
                j
                for j in self.hub.jobs.values()
                if j.namespace == namespace
                and (not stages or j.stage in stages)
                and all((j.spec.get("labels") or {}).get(k) == v for k, _, v in labels)
            ]
            jobs.sort(key=lambda j: j.created, reverse=True)
            cursor = int((ctx.query.get("cursor") or ["0"])[0])
            page = [j.as_json(now) for j in jobs[cursor : cursor + self.hub.jobs_page_size]]
        headers = {}
        if cursor + self.hub.jobs_page_size < len(jobs):
            query = [(k, v) for k, vs in ctx.query.items() if k != "cursor" for v in vs]
            query.append(("cursor", str(cursor + self.hub.jobs_page_size)))
            headers["Link"] = f'<{ctx.base}{ctx.path}?{urlencode(query)}>; rel="next"'
        return _json(page, headers=headers)

    def jobs_inspect(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace, job_id, _ = _JOBS_API.match(ctx.path).groups()  # type: ignore[union-attr]
        return _json(self.hub.job(namespace, job_id).as_json(self.hub.now()))

    def jobs_cancel(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace, job_id, _ = _JOBS_API.match(ctx.path).groups()  # type: ignore[union-attr]
        self.hub.cancel_job(self.hub.job(namespace, job_id))
        return _json({})

    def jobs_logs(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace, job_id, _ = _JOBS_API.match(ctx.path).groups()  # type: ignore[union-attr]
        job = self.hub.job(namespace, job_id)
        with self.hub._lock:
            logs = list(job.logs)
        tail = ctx.query.get("tail")
        if tail:
            logs = logs[-int(tail[0]) :]
        body = "".join(f"data: {json.dumps({'data': line, 'timestamp': ts})}\n\n" for ts, line in logs)
        return Reply(200, body.encode(), {"Cache-Control": "no-cache"}, "text/event-stream")

    # -- control API for manual use: faults, clock, request log
    def control(self, ctx: Ctx) -> Reply:
        if ctx.path == "/_standin/faults" and ctx.method == "POST":
            body = ctx.json()
            self.hub.faults.add(
                body["route"],
                status=body.get("status"),
                delay_s=float(body.get("delay_s", 0)),
                times=int(body.get("times", 1)),
                when=body.get("when", "before"),
                message=body.get("message"),
                skip=int(body.get("skip", 0)),
            )
            return _json({"ok": True})
        if ctx.path == "/_standin/advance" and ctx.method == "POST":
            self.hub.advance(float(ctx.json()["seconds"]))
            return _json({"now": _iso(self.hub.now())})
        if ctx.path == "/_standin/requests":
            return _json(
                [
                    {"method": r.method, "path": r.path, "route": r.route, "status": r.status}
                    for r in self.hub.requests
                ]
            )
        raise HttpError(404, f"no control route {ctx.path}")


@dataclass
class Ctx:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    user: str | None
    base: str

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, list[str]]:
        if self.headers.get("content-type", "").startswith("application/json"):
            data = self.json()
            return {k: (v if isinstance(v, list) else [str(v)]) for k, v in data.items()}
        return parse_qs(self.body.decode(), keep_blank_values=True)


def _make_handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    router = Router(hub)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes
        server_version = "hf-standin/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            return

        def date_time_string(self, timestamp: float | None = None) -> str:
            # The Date header follows the stand-in clock: the logs client compares event timestamps with it.
            return formatdate(hub.now() if timestamp is None else timestamp, usegmt=True)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            body = self._read_body()
            headers = {k: v for k, v in self.headers.items()}
            route, handler = router.route(self.command, path)
            query = parse_qs(parts.query, keep_blank_values=True)
            recorded = RecordedRequest(self.command, path, query, route, headers, body)
            hub.record(recorded)
            reply = self._dispatch(
                route,
                handler,
                Ctx(
                    self.command,
                    path,
                    query,
                    {k.lower(): v for k, v in headers.items()},
                    body,
                    hub.user_for(self.headers.get("Authorization")),
                    f"http://{self.headers.get('Host') or f'127.0.0.1:{self.server.server_address[1]}'}",
                ),
            )
            recorded.status = reply.status
            self._send(reply)

        def _dispatch(self, route: str, handler: Any, ctx: Ctx) -> Reply:
            fault = hub.faults.take(route, "before")
            if fault is not None:
                time.sleep(fault.delay_s)
                if fault.status is not None:
                    return _json({"error": fault.message or f"injected {fault.status}"}, fault.status)
            try:
                reply = handler(ctx)
            except HttpError as exc:
                headers = {"X-Error-Code": exc.error_code} if exc.error_code else {}
                headers["X-Error-Message"] = exc.message
                reply = _json({**exc.extra, "error": exc.message}, exc.status, headers)
            except (KeyError, ValueError, TypeError) as exc:
                reply = _json({"error": f"bad request: {exc}"}, 400)
            fault = hub.faults.take(route, "after")
            if fault is not None:
                time.sleep(fault.delay_s)
                if fault.status is not None:
                    return _json({"error": fault.message or f"injected {fault.status}"}, fault.status)
            return reply

        def _send(self, reply: Reply) -> None:
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (read timeout): nothing to do

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

    return Handler


def iter_secret_hits(hub: HubStandIn, secret: str) -> Iterator[str]:
    """Where a secret value appears in recorded traffic, outside the two places it belongs.

    Allowed: the ``Authorization`` header, and the ``secrets`` field of a job-creation body.
    """
    for r in hub.requests:
        for key, value in r.headers.items():
            if key.lower() != "authorization" and secret in value:
                yield f"{r.method} {r.path}: header {key}"
        if secret in unquote(r.path) or any(secret in v for vs in r.query.values() for v in vs):
            yield f"{r.method} {r.path}: url"
        body = r.body.decode("utf-8", "replace")
        if r.route == "jobs.create":
            try:
                payload = json.loads(body)
                payload.pop("secrets", None)
                body = json.dumps(payload)
            except ValueError:
                pass
        if secret in body or quote(secret) in body:
            yield f"{r.method} {r.path}: body"
    for job in hub.jobs.values():
        if any(secret in line for _, line in job.logs):
            yield f"job {job.id}: logs"
        if secret in json.dumps(job.as_json(hub.now())):
            yield f"job {job.id}: job record"
    for repo in hub.repos.values():
        for commit in repo.commits.values():
            if secret in commit.title or secret in commit.description:
                yield f"{repo.repo_id}@{commit.oid}: commit message"
            for path, blob in commit.files.items():
                if secret.encode() in blob.data:
                    yield f"{repo.repo_id}@{commit.oid}: {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default="hf_standin_token", help="accepted bearer token")
    parser.add_argument("--user", default="kotone-bot", help="user name the token belongs to")
    args = parser.parse_args(argv)
    hub = HubStandIn({args.token: args.user}, port=args.port).start()
    print(f"HF stand-in on {hub.url} (token for user {args.user!r}); Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
