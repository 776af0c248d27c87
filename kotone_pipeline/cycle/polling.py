"""Polling the training jobs (what ``training_jobs_sensor`` runs outside any run): which cycles are open,
their jobs' states, and re-submission of timed-out runs (``attempts.json``, written only here)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from kotone_pipeline.cycle.documents import (
    AttemptsDoc,
    EarlierJob,
    JobRecord,
    TrainingSubmissionDoc,
    ValidationSnapshotDoc,
    current_jobs,
)
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.jobs import JobBackend, JobBackendError, JobState


@dataclass
class PollResult:
    finished: dict[str, list[JobState]] = field(default_factory=dict)
    running: dict[str, list[JobState]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # job ids the backend did not report


def cycle_job_ids(artifacts: CycleArtifacts, cycle_id: str) -> dict[str, str]:
    """Run id -> the id of its latest job (after any re-submission by the polling path)."""
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    attempts = artifacts.read_if_present(cycle_id, AttemptsDoc)
    return {run_id: job.job_id for run_id, job in current_jobs(submission, attempts).items()}


def open_cycles(artifacts: CycleArtifacts) -> dict[str, list[str]]:
    """Cycles whose jobs were submitted but not yet validated -> their latest job ids."""
    result = {}
    submitted, validated = f"{TrainingSubmissionDoc.NAME}.json", f"{ValidationSnapshotDoc.NAME}.json"
    for cycle, names in artifacts.files_by_cycle().items():
        if submitted in names and validated not in names:
            result[cycle] = list(cycle_job_ids(artifacts, cycle).values())
    return result


def gone_state(job_id: str, cycle_id: str) -> JobState:
    """A job the backend no longer knows (deleted, garbage-collected): terminal, so its cycle can end."""
    return JobState(
        job_id=job_id,
        cycle_id=cycle_id,
        run_id=job_id.rsplit(".", 1)[-1],
        backend="unknown",
        stage="DELETED",
        message="the job backend no longer knows this job",
    )


def poll_jobs(backend: JobBackend, cycles: dict[str, list[str]], gone: Collection[str] = ()) -> PollResult:
    """All open cycles in one backend call.

    A job the backend does not report counts as still running (a remote list can lag behind a
    create), unless the caller has seen it missing long enough to list it in ``gone``.
    """
    all_ids = [job_id for ids in cycles.values() for job_id in ids]
    states = backend.statuses(all_ids) if all_ids else {}
    result = PollResult(missing=[j for j in all_ids if j not in states])
    for cycle, ids in cycles.items():
        known = [states[i] if i in states else gone_state(i, cycle) for i in ids if i in states or i in gone]
        if len(known) == len(ids) and all(s.terminal for s in known):
            result.finished[cycle] = known
        else:
            result.running[cycle] = known
    return result


def resubmit_timed_out(
    artifacts: CycleArtifacts, backend: JobBackend, cycle_id: str, states: Sequence[JobState]
) -> list[JobState]:
    """Submit again the runs of an ended cycle whose job hit its timeout with attempts left (the backend says
    which); returns the new jobs, and records each in the cycle's ``attempts`` document (the new job, the
    earlier one), which only this polling path writes. The backend's idempotent ``submit`` adopts a job
    already created for that attempt, so a repeated call creates nothing. A permanent refusal (e.g. the
    budget) is recorded on the run, which is then validated as it ended; a transient one raises
    JobBackendError (the caller tries again later)."""
    candidates = [s for s in states if backend.resubmits(s)]
    if not candidates:
        return []
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    attempts = artifacts.read_if_present(cycle_id, AttemptsDoc) or AttemptsDoc(cycle_id=cycle_id)
    new_states: list[JobState] = []
    transient: JobBackendError | None = None
    for state in candidates:
        run = submission.run(state.run_id)
        record = attempts.of(state.run_id)
        if run is None or record.resubmit_refused:
            continue
        try:
            new = backend.submit(submission.job_spec(run))
        except JobBackendError as exc:
            if exc.transient:
                transient = exc  # keep what was submitted so far; the rest is tried again later
                break
            record.resubmit_refused = str(exc)
            continue
        if new.job_id == state.job_id:
            continue  # the backend kept the ended job (no attempts left by its count)
        message = (state.message or "").split("\n", 1)[0]
        record.earlier_jobs.append(
            EarlierJob(job_id=state.job_id, attempt=state.attempt, stage=state.stage, message=message)
        )
        record.current = JobRecord.of(new)
        new_states.append(new)
    attempts.runs = {run_id: r for run_id, r in attempts.runs.items() if r != type(r)()}
    artifacts.write(cycle_id, attempts)
    if transient is not None:
        raise transient
    return new_states
