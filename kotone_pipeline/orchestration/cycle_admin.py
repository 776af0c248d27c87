"""Keeping the cycle partitions sound: which keys are not valid cycle ids, and deleting a cycle.

Dagster accepts any partition key (the UI's "add partition" box takes ``Bad_Cycle``), but every Kotone
artifact path and job id is built from the key, so a key outside ``CYCLE_ID_PATTERN`` can never run.
Such keys are reported, not fatal, and ``delete_cycle`` is the way to remove them (or any cycle that
should not go on) without touching the champion it may have produced.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from kotone_pipeline.cycle.documents import AttemptsDoc, TrainingSubmissionDoc
from kotone_pipeline.orchestration.partitions import cycles, invalid_reason
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.jobs import JobBackend, JobBackendError

DELETED_DIR = "deleted"


class CycleDeleteRefusedError(ValueError):
    """The cycle cannot be deleted (it produced the current champion, or it does not exist)."""


@dataclass
class DeleteReport:
    cycle_id: str
    partition_removed: bool = False
    jobs_canceled: list[str] = field(default_factory=list)
    jobs_already_ended: list[str] = field(default_factory=list)
    cancel_errors: list[str] = field(default_factory=list)
    moved_to: str | None = None  # the cycle's artifacts (and local job dirs), kept out of the loop's way

    def lines(self) -> list[str]:
        out = [f"removed partition {self.cycle_id!r}" if self.partition_removed else "no partition to remove"]
        if self.jobs_canceled:
            out.append(f"canceled unfinished job(s): {', '.join(self.jobs_canceled)}")
        if self.jobs_already_ended:
            out.append(f"job(s) that had already ended: {', '.join(self.jobs_already_ended)}")
        out += [f"could not cancel {e}" for e in self.cancel_errors]
        if self.moved_to:
            out.append(f"moved its artifacts to {self.moved_to}")
        return out


def _job_ids(artifacts: CycleArtifacts, backend: JobBackend, cycle_id: str) -> list[str]:
    ids: list[str] = []
    if artifacts.has(cycle_id, TrainingSubmissionDoc):
        ids += [r.job_id for r in artifacts.read(cycle_id, TrainingSubmissionDoc).runs]
        attempts = artifacts.read_if_present(cycle_id, AttemptsDoc)
        for record in attempts.runs.values() if attempts else ():
            ids += [e.job_id for e in record.earlier_jobs] + ([record.current.job_id] if record.current else [])
    list_jobs = getattr(backend, "jobs", None)  # the local backend can list a cycle's jobs on disk
    if callable(list_jobs):
        ids += [s.job_id for s in list_jobs(cycle_id)]
    return list(dict.fromkeys(ids))


def delete_cycle(
    instance: dg.DagsterInstance,
    artifacts: CycleArtifacts,
    registry: ChampionRegistry,
    backend: JobBackend,
    cycle_id: str,
    now: datetime | None = None,
) -> DeleteReport:
    """Remove the partition, cancel the cycle's unfinished jobs and move its artifacts to ``deleted/``.

    Refuses a cycle that produced the current champion (its model files are what serving loads)."""
    keys = list(instance.get_dynamic_partitions(cycles.name))
    report = DeleteReport(cycle_id)
    valid = invalid_reason(cycle_id) is None
    on_disk = valid and cycle_id in artifacts.cycles_on_disk()
    if cycle_id not in keys and not on_disk:
        raise CycleDeleteRefusedError(f"no cycle {cycle_id!r}; cycles: {', '.join(keys) or 'none'}")
    champion = registry.current()
    if champion is not None and champion.cycle_id == cycle_id:
        raise CycleDeleteRefusedError(
            f"cycle {cycle_id!r} produced the current champion {champion.model_id!r}: it cannot be deleted"
        )
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = artifacts.home / DELETED_DIR / f"{cycle_id}-{stamp}"
    if valid:
        job_ids = _job_ids(artifacts, backend, cycle_id)
        try:
            states = backend.statuses(job_ids) if job_ids else {}
        except JobBackendError as exc:
            raise CycleDeleteRefusedError(f"cannot read the state of {cycle_id!r}'s jobs: {exc}") from exc
        failed: set[str] = set()
        for job_id in job_ids:
            state = states.get(job_id)
            if state is None or state.terminal:
                report.jobs_already_ended.append(job_id)
                continue
            try:
                backend.cancel(job_id)
                report.jobs_canceled.append(job_id)
            except JobBackendError as exc:
                report.cancel_errors.append(f"{job_id}: {exc}")
                failed.add(job_id)
        # Moved, not deleted: evidence stays, but the sensor no longer sees an open cycle and a new cycle
        # of the same id starts clean instead of adopting these jobs.
        moved = False
        if on_disk:
            moved = artifacts.store.move_folder(artifacts.cycle_key(cycle_id), f"{DELETED_DIR}/{target.name}/cycle")
            if not artifacts.local and artifacts.cycle_dir(cycle_id).is_dir():  # this machine's working files
                _move(artifacts.cycle_dir(cycle_id), target / "cycle")
        local_jobs = artifacts.jobs_dir
        for job_id in job_ids:
            if (local_jobs / job_id).is_dir() and job_id not in failed:
                _move(local_jobs / job_id, target / "jobs" / job_id)
                moved = True
        report.moved_to = str(target) if moved else None
    if cycle_id in keys:
        instance.delete_dynamic_partition(cycles.name, cycle_id)
        report.partition_removed = True
    return report


def _move(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(dest))
