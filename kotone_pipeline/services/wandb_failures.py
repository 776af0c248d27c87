"""Hard-dim source ``wandb_failures``: the failure table of the last evaluation run logged to W&B.

Online only. Every successful fetch is saved as a snapshot (``$KOTONE_HOME/wandb_failures/<project>.json``,
atomic). When W&B cannot be reached the fetch fails with ``TrackerUnavailableError``, unless the caller
passes ``allow_stale=True``: then the last snapshot is used and the result says so (``stale``,
``snapshot_age_s``, ``fetched_at``) so the asset can show it. A stale snapshot is never used silently
(the seed project reused one from an earlier cycle without saying so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import DataFileError, describe_validation_error, write_json
from kotone_pipeline.domain.data.schemas import FailureExample, Vector
from kotone_pipeline.services.tracker import DEFAULT_HOST, TrackerUnavailableError
from kotone_pipeline.services.tracker_tables import TOP_FAILURES_TABLE
from kotone_pipeline.settings import load_settings

SNAPSHOT_DIR = "wandb_failures"
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class FailureTableNotFoundError(LookupError):
    """W&B answered, but no recent run of the project has a failure table."""


class _NoCredentials(Exception):
    pass


class FailureFetch(BaseModel):
    project: str
    entity: str | None
    host: str
    run_id: str
    run_name: str | None = None
    table: str
    rows: list[FailureExample]
    fetched_at: str  # ISO-8601 UTC time the rows came from W&B (for a stale result: the snapshot's)
    stale: bool = False
    snapshot_age_s: float | None = None  # set only when stale
    snapshot_path: str

    def as_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "wandb_failures_run_id": self.run_id,
            "wandb_failures_rows": len(self.rows),
            "wandb_failures_fetched_at": self.fetched_at,
            "wandb_failures_stale": self.stale,
        }
        if self.stale:
            meta["wandb_failures_snapshot_age_s"] = round(self.snapshot_age_s or 0.0, 1)
            meta["wandb_failures_snapshot"] = self.snapshot_path
        return meta


def snapshot_path(home: Path, project: str) -> Path:
    if not _PROJECT.match(project):
        raise ValueError(f"invalid W&B project name {project!r}")
    return Path(home) / SNAPSHOT_DIR / f"{project}.json"


def failures_from_table(table: Any) -> list[FailureExample]:
    """Rows of a failure table (a ``wandb.Table`` or anything with ``columns`` and ``data``).

    The layout is the one ``tracker.failures_table`` logs; rows come back in their logged rank order.
    """
    columns = list(table.columns)
    needed = ["pair_id", "source_type", "text", "row_mae"] + [f"{k}_{d}" for k in ("target", "pred") for d in DIMS]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(f"failure table lacks column(s) {', '.join(missing)}")
    # An in-memory wandb.Table keeps numpy scalars; a downloaded one holds JSON numbers. Read both alike.
    records = [
        {c: v.item() if isinstance(v, np.generic) else v for c, v in zip(columns, row, strict=True)}
        for row in table.data
    ]
    if "rank" in columns:
        records.sort(key=lambda r: r["rank"])
    rows = []
    for n, rec in enumerate(records, start=1):
        try:
            rows.append(
                FailureExample(
                    pair_id=rec["pair_id"],
                    source_type=rec["source_type"],
                    text=rec["text"],
                    target=Vector.parse({d: rec[f"target_{d}"] for d in DIMS}),
                    prediction=Vector.parse({d: rec[f"pred_{d}"] for d in DIMS}),
                    row_mae=rec["row_mae"],
                )
            )
        except (ValidationError, ValueError) as exc:
            reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise ValueError(f"failure table row {n}: {reason}") from exc
    return rows


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    import requests
    import wandb

    from kotone_pipeline.compat.wandb import wandb_api_failed_error

    return (wandb.errors.Error, wandb_api_failed_error(), requests.RequestException, OSError, TimeoutError)


def _default_api_factory(host: str, timeout_s: int) -> Callable[[], Any]:
    def make() -> Any:
        import wandb

        api_key = load_settings().wandb_api_key
        if not api_key:
            # wandb.Api() would otherwise try to prompt for a key.
            raise _NoCredentials("WANDB_API_KEY is not set")
        return wandb.Api(overrides={"base_url": host}, timeout=timeout_s, api_key=api_key)

    return make


def _fetch_online(api: Any, path: str, job_type: str, table: str, max_runs: int) -> tuple[Any, list[FailureExample]]:
    runs = api.runs(path, filters={"jobType": job_type}, order="-created_at", per_page=max_runs)
    for n, run in enumerate(runs):
        if n >= max_runs:
            break
        if run.summary.get(table) is None:
            continue
        artifact = api.artifact(f"{run.entity}/{run.project}/run-{run.id}-{table}:latest")
        return run, failures_from_table(artifact.get(table))
    raise FailureTableNotFoundError(f"no {job_type!r} run among the last {max_runs} of {path} has a {table!r} table")


def _load_snapshot(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = [FailureExample.model_validate(r) for r in data["rows"]]
        fetched_at = datetime.fromisoformat(data["fetched_at"])
        return {**data, "rows": rows, "fetched_at": fetched_at}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataFileError(path, [f"{path}: unreadable W&B failure snapshot ({exc})"]) from exc


def fetch_failures(
    project: str,
    home: Path,
    *,
    entity: str | None = None,
    allow_stale: bool = False,
    api_factory: Callable[[], Any] | None = None,
    host: str | None = None,
    job_type: str = "eval",
    table: str = TOP_FAILURES_TABLE,
    max_runs: int = 20,
    timeout_s: int = 20,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FailureFetch:
    """The failure table of the newest ``job_type`` run that logged one.

    api_factory: returns a ``wandb.Api``-like object; default builds ``wandb.Api`` for ``host``
    (``WANDB_BASE_URL`` or the W&B cloud) with ``WANDB_API_KEY``.
    Raises ``TrackerUnavailableError`` when W&B cannot be reached (and, with ``allow_stale``, no
    snapshot exists), ``FailureTableNotFoundError`` when W&B answers but has no such table.
    """
    host = (host or load_settings().wandb_base_url or DEFAULT_HOST).rstrip("/")
    snap = snapshot_path(home, project)
    path = f"{entity}/{project}" if entity else project
    factory = api_factory or _default_api_factory(host, timeout_s)
    try:
        api = factory()
        run, rows = _fetch_online(api, path, job_type, table, max_runs)
    except (_NoCredentials, *_unreachable_errors()) as exc:
        failure: BaseException = exc
        cause = str(exc) if isinstance(exc, _NoCredentials) else f"{type(exc).__name__}: {exc}"
        reason = f"W&B unreachable at {host}: {cause}"
    else:
        now = clock()
        result = FailureFetch(
            project=project,
            entity=entity or getattr(run, "entity", None),
            host=host,
            run_id=run.id,
            run_name=getattr(run, "name", None),
            table=table,
            rows=rows,
            fetched_at=now.isoformat(),
            snapshot_path=str(snap),
        )
        write_json(snap, result.model_dump(mode="json", exclude={"stale", "snapshot_age_s"}))
        return result

    if not allow_stale:
        raise TrackerUnavailableError(f"{reason}; set allow_stale to use the last snapshot") from failure
    if not snap.exists():
        raise TrackerUnavailableError(f"{reason}; no snapshot to fall back on at {snap}") from failure
    data = _load_snapshot(snap)
    age = (clock() - data["fetched_at"]).total_seconds()
    return FailureFetch(
        project=project,
        entity=data.get("entity"),
        host=data.get("host", host),
        run_id=data["run_id"],
        run_name=data.get("run_name"),
        table=data.get("table", table),
        rows=data["rows"],
        fetched_at=data["fetched_at"].isoformat(),
        stale=True,
        snapshot_age_s=max(age, 0.0),
        snapshot_path=str(snap),
    )
