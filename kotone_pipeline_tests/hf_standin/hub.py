"""What the routes and the job runner use of the stand-in (``HubStandIn`` in ``server.py`` is the one
implementation): a protocol, so that neither imports the server that builds them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from kotone_pipeline_tests.hf_standin.model import Faults, JobRecord, RecordedRequest, Repo


class Hub(Protocol):
    jobs_page_size: int
    faults: Faults
    hold_scheduling: bool
    ignore_label_filter: bool
    machine_env: dict[str, str]
    lfs_objects: dict[str, bytes]
    jobs: dict[str, JobRecord]
    workdir: Path
    _lock: threading.RLock

    @property
    def url(self) -> str: ...

    @property
    def requests(self) -> list[RecordedRequest]: ...

    def now(self) -> float: ...

    def advance(self, seconds: float) -> None: ...

    def create_repo(self, repo_type: str, repo_id: str, private: bool = True, base: str = "") -> Repo: ...

    def repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo: ...

    def create_job(self, namespace: str, spec: dict[str, Any], *, run: bool = True) -> JobRecord: ...

    def job(self, namespace: str, job_id: str) -> JobRecord: ...

    def cancel_job(self, job: JobRecord) -> None: ...
