"""A local stand-in for the Hugging Face Hub and Jobs HTTP API (the subset this project uses).

It speaks the contract in ``shared/reference/hf_api_notes.md`` well enough for the real ``huggingface_hub``
client: repos with real, immutable commit shas (sha1 of content), LFS uploads, ``resolve`` downloads, and Jobs
that really run as local subprocesses. Faults can be injected per route, every request is recorded, and the
server clock can be moved forward so that durations (stuck in SCHEDULING, cost) need no sleeping.

Run it by hand: ``python -m kotone_pipeline_tests.hf_standin.server --port 8765 --token hf_dev``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from kotone_pipeline_tests.hf_standin.model import (
    GITATTRIBUTES,
    LFS_SUFFIXES,
    LFS_THRESHOLD_BYTES,
    REPO_ROOT,
    TERMINAL,
    URL_PREFIX,
    Blob,
    Commit,
    Faults,
    HttpError,
    JobRecord,
    RecordedRequest,
    Repo,
    jobs_hardware,
    make_commit,
)
from kotone_pipeline_tests.hf_standin.routes import Ctx, Reply, Router, json_reply
from kotone_pipeline_tests.hf_standin.runner import JobRunner

__all__ = ["REPO_ROOT", "HubStandIn", "iter_secret_hits", "main"]


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
        self.ignore_label_filter = False  # the list answers every job of the namespace (a server bug)
        # Variables every job machine has (what its image sets); a job's own env and secrets override them.
        self.machine_env: dict[str, str] = {}
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
        return sum(1 for r in self.requests if r.route == route and not (first_page_only and "cursor" in r.query))

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
            first = make_commit(None, {".gitattributes": Blob(GITATTRIBUTES, False)}, "initial commit", "", now)
            repo.commits[first.oid] = first
            repo.branches["main"] = first.oid
            self.repos[key] = repo
            return repo

    def put_files(
        self, repo_type: str, repo_id: str, files: dict[str, bytes], *, private: bool = False, title: str = "upload"
    ) -> Commit:
        """Commit files straight into a repo on main (created when missing): what its owner pushed."""
        with self._lock:
            repo = self.repos.get((repo_type, repo_id)) or self.create_repo(repo_type, repo_id, private=private)
            parent = repo.resolve("main")
            blobs = dict(parent.files)
            for path, data in files.items():
                blobs[path] = Blob(data, len(data) > LFS_THRESHOLD_BYTES or path.endswith(LFS_SUFFIXES))
            commit = make_commit(parent, blobs, title, "", self.now())
            repo.commits[commit.oid] = commit
            repo.branches["main"] = commit.oid
            return commit

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
        if flavor not in {entry["name"] for entry in jobs_hardware()}:  # what /api/jobs/hardware lists
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
            thread = threading.Thread(target=JobRunner(self).run, args=(job,), name=f"job-{job.id}", daemon=True)
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

    def wait_jobs(self, timeout_s: float = 30.0) -> None:
        """Block until every started job's runner thread has finished (tests)."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._job_threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


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
                    return json_reply({"error": fault.message or f"injected {fault.status}"}, fault.status)
            try:
                reply = handler(ctx)
            except HttpError as exc:
                headers = {"X-Error-Code": exc.error_code} if exc.error_code else {}
                headers["X-Error-Message"] = exc.message
                reply = json_reply({**exc.extra, "error": exc.message}, exc.status, headers)
            except (KeyError, ValueError, TypeError) as exc:
                reply = json_reply({"error": f"bad request: {exc}"}, 400)
            fault = hub.faults.take(route, "after")
            if fault is not None:
                time.sleep(fault.delay_s)
                if fault.status is not None:
                    return json_reply({"error": fault.message or f"injected {fault.status}"}, fault.status)
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
