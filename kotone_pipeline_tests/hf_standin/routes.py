"""The HTTP routes of the stand-in: what each Hub / Jobs endpoint answers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from kotone_pipeline_tests.hf_standin.hub import Hub
from kotone_pipeline_tests.hf_standin.model import (
    LFS_SUFFIXES,
    LFS_THRESHOLD_BYTES,
    REPO_TYPES,
    URL_PREFIX,
    Blob,
    Commit,
    HttpError,
    Repo,
    _iso,
    jobs_hardware,
    make_commit,
)

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


def json_reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), headers or {})


class Router:
    """Maps (method, path) to the stand-in's behaviour. Returns (route name, handler)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def route(self, method: str, path: str) -> tuple[str, Any]:
        if path == "/api/whoami-v2":
            return "whoami", self.whoami
        if path == "/api/agent-harnesses":
            return "agent_harnesses", lambda ctx: json_reply([])
        if path == "/api/validate-yaml":
            return "validate_yaml", lambda ctx: json_reply({"errors": [], "warnings": []})
        if path == "/api/repos/create" and method == "POST":
            return "repo.create", self.repo_create
        if path == "/api/jobs/hardware":
            return "jobs.hardware", self.jobs_hardware
        if m := _JOBS_API.match(path):
            ns, job_id, action = m.groups()
            if job_id is None:
                return ("jobs.create", self.jobs_create) if method == "POST" else ("jobs.list", self.jobs_list)
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
        return "unknown", lambda ctx: json_reply({"error": f"stand-in: no route for {method} {path}"}, 404)

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
        return json_reply({"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})

    # -- repos
    def repo_create(self, ctx: Ctx) -> Reply:
        user = self._need_user(ctx)
        body = ctx.json()
        namespace = body.get("organization") or user
        repo_type = body.get("type") or "model"
        private = body.get("visibility", "private" if body.get("private") else "public") == "private"
        self.hub.create_repo(repo_type, f"{namespace}/{body['name']}", private=private, base=ctx.base)
        url = f"{ctx.base}/{URL_PREFIX[repo_type]}{namespace}/{body['name']}"
        return json_reply({"url": url, "name": f"{namespace}/{body['name']}"})

    def repo_info(self, ctx: Ctx) -> Reply:
        repo, sub = self._repo_from_api(ctx)
        revision = unquote(sub[len("/revision/") :]) if sub.startswith("/revision/") else "main"
        commit = repo.resolve(revision)
        return json_reply(
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
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": oid} for n, oid in repo.branches.items()]
        return json_reply({"branches": branches, "converts": [], "tags": []})

    def repo_branch(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        repo, sub = self._repo_from_api(ctx)
        branch = unquote(sub[len("/branch/") :])
        if ctx.method == "DELETE":
            repo.branches.pop(branch, None)
            return json_reply({})
        if not re.fullmatch(r"[A-Za-z0-9._-]+", branch):
            raise HttpError(400, f"Invalid branch name {branch!r}")
        starting = (ctx.json() or {}).get("startingPoint") or "main"
        with self.hub._lock:
            if branch in repo.branches:
                raise HttpError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = repo.resolve(starting).oid
        return json_reply({})

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
        return json_reply({"files": answer})

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
        return json_reply({"commitUrl": url, "commitOid": commit.oid, "success": True, "author": user})

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
                answer.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()})
        return json_reply(answer)

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
        return json_reply(list(entries.values()))

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
        return json_reply(jobs_hardware())

    def jobs_create(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace = _JOBS_API.match(ctx.path).group(1)  # type: ignore[union-attr]
        job = self.hub.create_job(namespace, ctx.json())
        return json_reply(job.as_json(self.hub.now()))

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
                and (
                    self.hub.ignore_label_filter or all((j.spec.get("labels") or {}).get(k) == v for k, _, v in labels)
                )
            ]
            jobs.sort(key=lambda j: j.created, reverse=True)
            cursor = int((ctx.query.get("cursor") or ["0"])[0])
            page = [j.as_json(now) for j in jobs[cursor : cursor + self.hub.jobs_page_size]]
        headers = {}
        if cursor + self.hub.jobs_page_size < len(jobs):
            query = [(k, v) for k, vs in ctx.query.items() if k != "cursor" for v in vs]
            query.append(("cursor", str(cursor + self.hub.jobs_page_size)))
            headers["Link"] = f'<{ctx.base}{ctx.path}?{urlencode(query)}>; rel="next"'
        return json_reply(page, headers=headers)

    def jobs_inspect(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace, job_id, _ = _JOBS_API.match(ctx.path).groups()  # type: ignore[union-attr]
        return json_reply(self.hub.job(namespace, job_id).as_json(self.hub.now()))

    def jobs_cancel(self, ctx: Ctx) -> Reply:
        self._need_user(ctx)
        namespace, job_id, _ = _JOBS_API.match(ctx.path).groups()  # type: ignore[union-attr]
        self.hub.cancel_job(self.hub.job(namespace, job_id))
        return json_reply({})

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
            return json_reply({"ok": True})
        if ctx.path == "/_standin/advance" and ctx.method == "POST":
            self.hub.advance(float(ctx.json()["seconds"]))
            return json_reply({"now": _iso(self.hub.now())})
        if ctx.path == "/_standin/requests":
            return json_reply(
                [{"method": r.method, "path": r.path, "route": r.route, "status": r.status} for r in self.hub.requests]
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
