"""The loop's shared state as the files of a Hugging Face repo (``KOTONE_STATE_STORE=hf``).

Every pod of a deployment reaches the Hub, so cycle documents and the champion registry kept in a repo need
no ReadWriteMany volume. Each write is a commit, so the repo's history is the state's audit trail. A read
takes the branch's file as it is now (one request); ``update`` first asks for the head commit and reads
every key at that commit, so what it decides on belongs to one commit. It commits with ``parent_commit`` =
the commit it read: the Hub refuses the commit (HTTP 412) when someone else committed in between, and
``update`` reads again and asks ``change`` again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_session, hf_hub_url
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFolder
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from kotone_pipeline.services.hf_common import (
    Redactor,
    RetryPolicy,
    describe_error,
    env_secrets,
    http_status,
    install_request_timeout,
    is_ambiguous,
    is_transient,
    resolve_endpoint,
    resolve_token,
)
from kotone_pipeline.services.state_store import Change, StateConflictError, StateStore, StateStoreError, check_key

log = logging.getLogger(__name__)

BRANCH = "main"
UPDATE_ATTEMPTS = 8
_READY_REPOS: set[tuple[str, str, str]] = set()  # (endpoint, type, id) of the repos this process created or found


class HfRepoStateStore(StateStore):
    """Files under ``prefix`` in the ``repo_type`` repo ``repo_id`` (created private on first use)."""

    name = "hf"

    def __init__(
        self,
        repo_id: str,
        *,
        prefix: str = "",
        repo_type: str = "dataset",
        token: str | None = None,
        endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        api: HfApi | None = None,
    ) -> None:
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"state repo id must be ORG/NAME, got {repo_id!r}")
        self.repo_id = repo_id
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.repo_type = repo_type
        self.endpoint = resolve_endpoint(endpoint)
        self._token = resolve_token(token)
        self.api = api or HfApi(endpoint=self.endpoint, token=self._token)
        self.retry = retry or RetryPolicy()
        self.redact = Redactor([self._token, *env_secrets().values()])
        install_request_timeout(self.retry.request_timeout_s)

    # -- StateStore ---------------------------------------------------------------------------------------

    def read(self, key: str) -> bytes | None:
        # One request: the branch's file as of now. ``update`` pins its reads to one commit instead.
        self._ensure_repo()  # so that a 404 means "no such file", not "no such repo"
        return self._read_at(key, BRANCH)

    def write(self, key: str, data: bytes) -> None:
        # One writer per document, and the same bytes written twice is the same state: safe to retry.
        self._call(f"write {self._path(key)}", lambda: self._commit({key: data}, f"kotone: {key}", parent=None))

    def exists(self, key: str) -> bool:
        path = self._path(key)
        self._ensure_repo()
        found = self._call(
            f"look up {path}",
            lambda: self.api.get_paths_info(self.repo_id, [path], repo_type=self.repo_type, revision=BRANCH),
        )
        return any(entry.path == path and not isinstance(entry, RepoFolder) for entry in found)

    def version(self, key: str) -> object:
        return self.head()  # any commit may have changed the file; reading it again is one request more

    def folders(self, prefix: str) -> list[str]:
        return sorted(
            e.path.rsplit("/", 1)[-1] for e in self._tree(prefix, recursive=False) if isinstance(e, RepoFolder)
        )

    def list_files(self, prefix: str) -> list[str]:
        path = self._path(prefix) if prefix else self.prefix
        start = len(path) + 1 if path else 0
        return sorted(e.path[start:] for e in self._tree(prefix, recursive=True) if not isinstance(e, RepoFolder))

    def _tree(self, prefix: str, *, recursive: bool) -> list[Any]:
        """The entries under ``prefix`` on the branch (none when the folder does not exist)."""
        path = self._path(prefix) if prefix else self.prefix
        self._ensure_repo()

        def listing() -> list[Any]:
            try:
                return list(
                    self.api.list_repo_tree(
                        self.repo_id,
                        path_in_repo=path or None,
                        recursive=recursive,
                        repo_type=self.repo_type,
                        revision=BRANCH,
                    )
                )
            except EntryNotFoundError:
                return []

        return self._call(f"list {path or '/'}", listing)

    def update(self, keys: Sequence[str], change: Change) -> None:
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            parent = self.head()
            writes = change({key: self._read_at(key, parent) for key in keys})
            if not writes:
                return
            try:
                self._commit(dict(writes), f"kotone: {', '.join(k for k, _ in writes)}", parent=parent)
                return
            except Exception as exc:
                if http_status(exc) != 412 and not is_ambiguous(exc):
                    raise StateStoreError(
                        f"{self.describe()}: commit refused: {describe_error(exc, self.redact)}", transient=False
                    ) from None
                # 412: someone committed since ``parent``. Ambiguous (5xx, timeout): the commit may have
                # landed. Either way read again; ``change`` sees what is there now and decides again.
                log.info("%s: commit %d lost a race or failed (%s); reading again", self.describe(), attempt, exc)
                time.sleep(random.uniform(0.05, 0.2) * attempt)
        raise StateConflictError(
            f"{self.describe()}: {UPDATE_ATTEMPTS} commits in a row lost a race with other writers; try again"
        )

    def move_folder(self, source: str, dest: str) -> bool:
        """One commit that adds the files under ``dest`` and deletes ``source``: a reader sees one or the other."""
        origin = self._path(source)

        def files_at(revision: str) -> list[str]:
            try:
                entries = self.api.list_repo_tree(
                    self.repo_id, path_in_repo=origin, recursive=True, repo_type=self.repo_type, revision=revision
                )
                return [e.path for e in entries if not isinstance(e, RepoFolder)]
            except EntryNotFoundError:
                return []

        parent = self.head()
        paths = self._call(f"list {origin}", lambda: files_at(parent))
        if not paths:
            return False
        operations: list[Any] = []
        for path in paths:
            key = path[len(self.prefix) + 1 :] if self.prefix else path
            data = self._read_at(key, parent)
            if data is not None:
                moved = f"{dest}/{key[len(source) + 1 :]}"
                operations.append(CommitOperationAdd(self._path(moved), data))
        operations.append(CommitOperationDelete(origin, is_folder=True))
        self._call(
            f"move {origin}",
            lambda: self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=f"kotone: move {source} to {dest}",
                repo_type=self.repo_type,
                revision=BRANCH,
                parent_commit=parent,
            ),
        )
        return True

    def location(self, key: str) -> str:
        kind = {"dataset": "datasets/", "space": "spaces/"}.get(self.repo_type, "")
        return f"{self.endpoint}/{kind}{self.repo_id}/blob/{BRANCH}/{self._path(key)}"

    def sub(self, prefix: str) -> HfRepoStateStore:
        return HfRepoStateStore(
            self.repo_id,
            prefix=f"{self.prefix}/{check_key(prefix)}" if self.prefix else check_key(prefix),
            repo_type=self.repo_type,
            token=self._token,
            endpoint=self.endpoint,
            retry=self.retry,
            api=self.api,
        )

    def describe(self) -> str:
        where = f"{self.repo_id}/{self.prefix}" if self.prefix else self.repo_id
        return f"hf {self.repo_type} {where}"

    # -- the Hub --------------------------------------------------------------------------------------------

    def head(self) -> str:
        """The branch's head commit: what reads are pinned to and what ``update`` names as its parent."""
        self._ensure_repo()
        info = self._call(
            f"read the head of {self.repo_id}",
            lambda: self.api.repo_info(self.repo_id, repo_type=self.repo_type, revision=BRANCH),
        )
        return str(info.sha)

    def _read_at(self, key: str, revision: str) -> bytes | None:
        path = self._path(key)
        url = hf_hub_url(self.repo_id, path, repo_type=self.repo_type, revision=revision, endpoint=self.endpoint)

        def fetch() -> bytes | None:
            response = get_session().get(url, headers=build_hf_headers(token=self._token), follow_redirects=True)
            if response.status_code == 404:
                return None
            hf_raise_for_status(response)
            return response.content

        return self._call(f"read {path}@{revision[:12]}", fetch)

    def _commit(self, files: dict[str, bytes], message: str, parent: str | None) -> None:
        self._ensure_repo()
        operations = [CommitOperationAdd(self._path(key), data) for key, data in files.items()]
        self.api.create_commit(
            self.repo_id,
            operations,
            commit_message=message,
            repo_type=self.repo_type,
            revision=BRANCH,
            parent_commit=parent,
        )

    def _ensure_repo(self) -> None:
        # Once per process and repo: resources build a new store for every step.
        ready = (self.endpoint, self.repo_type, self.repo_id)
        if ready not in _READY_REPOS:
            self._call(
                f"create {self.repo_id}",
                lambda: self.api.create_repo(self.repo_id, repo_type=self.repo_type, private=True, exist_ok=True),
            )
            _READY_REPOS.add(ready)

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return self.retry.call(fn)
        except StateStoreError:
            raise
        except RepositoryNotFoundError as exc:
            raise StateStoreError(
                f"{self.describe()}: {what}: {describe_error(exc, self.redact)} (does HF_TOKEN have write access to "
                f"{self.repo_id}?)",
                transient=False,
            ) from None
        except Exception as exc:
            raise StateStoreError(
                f"{self.describe()}: {what}: {describe_error(exc, self.redact)}", transient=is_transient(exc)
            ) from None
