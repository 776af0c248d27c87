"""Sensors: poll training jobs of every open cycle; open a nightly cycle on a cron gate.

See docs/design.md § Cycles in Dagster.
"""

import datetime as dt
import hashlib
import json
from typing import Any

import dagster as dg

from kotone_pipeline.compat.dagster import get_latest_completed_cron_tick
from kotone_pipeline.cycle import polling
from kotone_pipeline.orchestration.jobs import cycle_job, report_job, validation_job
from kotone_pipeline.orchestration.metadata import as_of
from kotone_pipeline.orchestration.partitions import CYCLE_TAG, cycles
from kotone_pipeline.orchestration.resources import JobBackendResource, KotoneHomeResource, LoopSettings
from kotone_pipeline.services.jobs import JobBackendError, JobState
from kotone_pipeline.settings import load_settings

WORKFLOW_LOG = dg.AssetKey("workflow_log")
MAX_REMEMBERED_CYCLES = 500
MAX_VALIDATION_RETRIES = 3
# Ticks a job may be missing from the backend's answer before it counts as DELETED (a remote list can
# lag behind a create, so one miss proves nothing).
MISSING_TICKS_BEFORE_GONE = 10
VALIDATION_KEY_TAG = "kotone/validation_key"


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        cursor = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        cursor = {}
    cursor.setdefault("reported", {})
    cursor.setdefault("errors", 0)
    cursor.setdefault("missing", {})
    return cursor


def _failed_validations(instance: dg.DagsterInstance, reported: dict[str, str], still_open: set[str]) -> dict[str, str]:
    """Reported cycles, still without a validation snapshot, whose latest validation run failed."""
    failed = {}
    for cycle_id, run_key in reported.items():
        if cycle_id not in still_open:
            continue
        records = instance.get_run_records(filters=dg.RunsFilter(tags={VALIDATION_KEY_TAG: run_key}), limit=1)
        if records and records[0].dagster_run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            failed[cycle_id] = run_key
    return failed


def _retry_key(run_key: str) -> str | None:
    base, _, attempt = run_key.partition(":retry")
    number = int(attempt or 0) + 1
    return f"{base}:retry{number}" if number <= MAX_VALIDATION_RETRIES else None


def _validation_request(cycle_id: str, run_key: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key, partition_key=cycle_id, tags={CYCLE_TAG: cycle_id, VALIDATION_KEY_TAG: run_key}
    )


def validation_run_key(cycle_id: str, job_ids: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(job_ids)).encode()).hexdigest()[:12]
    return f"validate:{cycle_id}:{digest}"


# How often the daemon evaluates training_jobs_sensor. `kotone demo` (which ticks it itself, through the
# code location, while it waits for a cycle's jobs) sets 1 for the code server it starts.
SENSOR_INTERVAL_ENV = "KOTONE_SENSOR_INTERVAL_S"


def _sensor_interval_s() -> int:
    return load_settings().sensor_interval_s


@dg.sensor(
    job=validation_job,
    minimum_interval_seconds=_sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Polls the jobs of all open cycles in one backend call; reports trained_models and requests validation."
    ),
)
def training_jobs_sensor(
    context: dg.SensorEvaluationContext, kotone_home: KotoneHomeResource, job_backend: JobBackendResource
) -> dg.SensorResult | dg.SkipReason:
    cursor = _load_cursor(context.cursor)
    artifacts = kotone_home.artifacts()
    all_open = polling.open_cycles(artifacts)
    events, requests = [], []
    for cycle_id, run_key in sorted(_failed_validations(context.instance, cursor["reported"], set(all_open)).items()):
        retry = _retry_key(run_key)
        if retry is not None:
            requests.append(_validation_request(cycle_id, retry))
            cursor["reported"][cycle_id] = retry
    open_cycles = {c: ids for c, ids in all_open.items() if c not in cursor["reported"]}
    if not open_cycles and not requests:
        return dg.SkipReason("no cycle is waiting for training jobs")
    gone = {job for job, ticks in cursor["missing"].items() if ticks >= MISSING_TICKS_BEFORE_GONE}
    backend = job_backend.get_backend()  # one per tick: re-submissions share its memory of unsettled creates
    try:
        poll = polling.poll_jobs(backend, open_cycles, gone=gone)
    except JobBackendError as exc:
        # A backend hiccup must not fail the tick or lose state: count it and try again next tick.
        cursor["errors"] += 1
        cursor["last_error"] = str(exc)[:300]
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason(f"job backend unavailable ({'transient' if exc.transient else 'permanent'}): {exc}")
    cursor["missing"] = {job: cursor["missing"].get(job, 0) + 1 for job in poll.missing}
    resubmitted: dict[str, list[str]] = {}
    for cycle_id, states in sorted(poll.finished.items()):
        try:
            again = polling.resubmit_timed_out(artifacts, backend, cycle_id, states)
        except JobBackendError as exc:  # transient: the runs are submitted again on a later tick
            context.log.warning(f"{cycle_id}: re-submitting timed-out runs failed, retrying next tick: {exc}")
            resubmitted[cycle_id] = []
            continue
        if again:
            # The cycle waits for the new attempts instead of being validated now.
            resubmitted[cycle_id] = [s.job_id for s in again]
            events.append(_resubmission_observation(cycle_id, states, again))
            continue
        job_ids = [s.job_id for s in states]
        run_key = validation_run_key(cycle_id, job_ids)
        rows = "\n".join(
            f"| {s.run_id} | {s.job_id} | {s.stage} | {s.running_s or ''} | {s.cost_usd or 0.0} | {s.url or ''} |"
            for s in states
        )
        events.append(
            dg.AssetMaterialization(
                asset_key="trained_models",
                partition=cycle_id,
                metadata={
                    "runs": dg.MetadataValue.md(
                        "| run | job | stage | running s | cost USD | url |\n|---|---|---|---|---|---|\n" + rows
                    ),
                    "completed": dg.MetadataValue.int(sum(s.stage == "COMPLETED" for s in states)),
                    "failed": dg.MetadataValue.int(sum(s.stage != "COMPLETED" for s in states)),
                    "job_ids": dg.MetadataValue.json(job_ids),
                    "stages_as_of": dg.MetadataValue.text(as_of()),
                },
            )
        )
        requests.append(_validation_request(cycle_id, run_key))
        cursor["reported"][cycle_id] = run_key
    if len(cursor["reported"]) > MAX_REMEMBERED_CYCLES:
        # Validated cycles no longer show up as open, so forgetting the oldest is safe.
        for old in sorted(cursor["reported"])[: len(cursor["reported"]) - MAX_REMEMBERED_CYCLES]:
            del cursor["reported"][old]
    cursor["open"] = sorted([*poll.running, *resubmitted])
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if not requests:
        waiting = sorted([*poll.running, *resubmitted])
        if events:  # re-submissions only: record them, request nothing
            return dg.SensorResult(asset_events=events)
        return dg.SkipReason(f"waiting for jobs of {len(waiting)} cycle(s): {', '.join(waiting)}")
    return dg.SensorResult(run_requests=requests, asset_events=events or None)


def _resubmission_observation(cycle_id: str, ended: list[JobState], again: list[JobState]) -> dg.AssetObservation:
    """training_submission's new jobs (its doc is updated too): an observation, as its inputs did not change."""
    earlier = {s.run_id: s.job_id for s in ended}
    rows = "\n".join(f"| {s.run_id} | {earlier.get(s.run_id, '')} | {s.job_id} | {s.attempt} |" for s in again)
    return dg.AssetObservation(
        asset_key="training_submission",
        partition=cycle_id,
        metadata={
            "resubmitted": dg.MetadataValue.md(
                "Runs whose job hit its timeout, submitted again (they resume from their checkpoint):\n\n"
                "| run | timed-out job | new job | attempt |\n|---|---|---|---|\n" + rows
            ),
            "job_ids": dg.MetadataValue.json([s.job_id for s in again]),
            "attempts": dg.MetadataValue.json({s.run_id: s.attempt for s in again}),
        },
    )


def nightly_cycle_id(tick: dt.datetime) -> str:
    return f"nightly-{tick:%Y%m%d}"


@dg.sensor(
    job=cycle_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Opens one nightly-YYYYMMDD cycle per night after the cron time (KOTONE_NIGHTLY_CRON); "
        "waits while an earlier cycle's jobs run."
    ),
)
def nightly_cycle_sensor(
    context: dg.SensorEvaluationContext,
    kotone_home: KotoneHomeResource,
    loop_settings: LoopSettings,
) -> dg.SensorResult | dg.SkipReason:
    now = dt.datetime.now(dt.UTC)
    config = loop_settings.config()
    tick = get_latest_completed_cron_tick(config.nightly_cron, now, config.nightly_timezone)
    cycle_id = nightly_cycle_id(tick)
    if context.instance.has_dynamic_partition(cycles.name, cycle_id):
        return dg.SkipReason(f"{cycle_id} already exists")
    unfinished = sorted(polling.open_cycles(kotone_home.artifacts()))
    if unfinished:
        return dg.SkipReason(
            f"skipping {cycle_id}: earlier cycle(s) still have unfinished jobs: {', '.join(unfinished)}"
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=cycle_id, partition_key=cycle_id, tags={CYCLE_TAG: cycle_id})],
        dynamic_partitions_requests=[cycles.build_add_request([cycle_id])],
    )


@dg.asset_sensor(
    asset_key=dg.AssetKey("promotion_decision"),
    job=report_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Rebuilds workflow_log after a promotion decision made outside validation_job (a forced promotion or a "
        "re-decision from the UI); validation_job rebuilds it itself."
    ),
)
def workflow_log_sensor(
    context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
) -> dg.RunRequest | dg.SkipReason:
    if _plans_the_report(context.instance, asset_event.run_id):
        return dg.SkipReason(f"run {asset_event.run_id[:8]} rebuilds the workflow log itself")
    # One rebuild per decision (run and cycle): the run key makes a re-evaluated tick a no-op.
    partition = asset_event.dagster_event.partition if asset_event.dagster_event is not None else None
    return dg.RunRequest(run_key=f"workflow-log:{asset_event.run_id}:{partition or '-'}")


def _plans_the_report(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the decision's run also materializes workflow_log (validation_job does): Dagster records every
    asset a run plans to materialize when the run is created."""
    if not run_id:
        return False
    planned = instance.get_records_for_run(
        run_id=run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1000
    ).records
    return any(
        r.event_log_entry.dagster_event is not None and r.event_log_entry.dagster_event.asset_key == WORKFLOW_LOG
        for r in planned
    )
