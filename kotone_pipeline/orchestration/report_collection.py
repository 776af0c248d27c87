"""Collect the workflow log from the Dagster instance, the champion registry and the cycle documents.

Everything comes from records the pipeline itself wrote: run records (filtered by the partition tag),
materialization and asset-check events from the event log, ticks of ``training_jobs_sensor`` where the
daemon stored them, the champion registry and the per-cycle documents (one cycle's row: ``report_cycle``).
Rendering lives in ``kotone_pipeline.domain.report``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from kotone_pipeline.compat.dagster import InstigatorType, TickStatus
from kotone_pipeline.cycle.documents import ValidationSnapshotDoc
from kotone_pipeline.domain.report.model import CycleEntry, Event, Report, fmt_num
from kotone_pipeline.orchestration.partitions import cycles as cycles_partitions
from kotone_pipeline.orchestration.report_cycle import (
    STEPS,
    VALIDATION_KEY_TAG,
    Mat,
    cycle_entry,
    env_prefix,
    metadata_value,
    utc,
)
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.settings import load_settings

DAGSTER_URL_ENV = "KOTONE_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
PARTITION_TAG = "dagster/partition"
SENSOR_NAME = "training_jobs_sensor"
_SUBMITTED = STEPS.index("training_submission") + 1
CYCLE_ASSETS = (*STEPS[:_SUBMITTED], "failure_playbook", "trained_models", *STEPS[_SUBMITTED:])
EVENT_KIND_BY_ASSET = {
    "trained_models": "sensor_report",
    "validation_snapshot": "validation",
    "promotion_decision": "decision",
}
MAX_TICKS = 2000
PAGE = 1000


def dagster_url(env: Mapping[str, str] | None = None) -> str:
    return (load_settings(env).dagster_url or DEFAULT_DAGSTER_URL).rstrip("/")


def known_cycles(instance: dg.DagsterInstance, artifacts: CycleArtifacts) -> list[str]:
    """The cycle partitions in the order they were added, then cycles only found on disk."""
    partitions = list(instance.get_dynamic_partitions(cycles_partitions.name))
    extra = [c for c in artifacts.cycles_on_disk() if c not in set(partitions)]
    return partitions + extra


# --- instance reads ---------------------------------------------------------------------------------


def _materializations(instance: dg.DagsterInstance, selected: Sequence[str]) -> dict[str, list[Mat]]:
    by_cycle: dict[str, list[Mat]] = defaultdict(list)
    for asset in CYCLE_ASSETS:
        cursor = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=list(selected)),
                limit=PAGE,
                cursor=cursor,
                ascending=True,
            )
            for record in result.records:
                mat = record.asset_materialization
                if mat is None or mat.partition is None:
                    continue
                by_cycle[mat.partition].append(
                    Mat(asset, mat.partition, utc(record.timestamp), record.run_id or "", mat.metadata)  # type: ignore[arg-type]
                )
            if not result.has_more:
                break
            cursor = result.cursor
    return by_cycle


def _run_records(instance: dg.DagsterInstance, selected: Sequence[str]) -> dict[str, list[dg.RunRecord]]:
    by_cycle: dict[str, list[dg.RunRecord]] = defaultdict(list)
    if not selected:
        return by_cycle
    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: list(selected)}), ascending=True)
    for record in records:
        by_cycle[record.dagster_run.tags.get(PARTITION_TAG, "")].append(record)
    return by_cycle


def _run_detail_events(instance: dg.DagsterInstance, run_id: str) -> list[Any]:
    of_type = {dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.STEP_FAILURE}
    return list(instance.get_records_for_run(run_id, of_type=of_type).records)


def _failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    failed = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return sorted({r.event_log_entry.step_key or "?" for r in failed})


def _sensor_ticks(instance: dg.DagsterInstance) -> list[Any]:
    """Ticks of training_jobs_sensor that did something (requested runs or failed); none when no daemon ran it."""
    try:
        states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    except NotImplementedError:  # a storage without schedules
        return []
    ticks = []
    for state in states:
        if state.name != SENSOR_NAME:
            continue
        ticks += instance.get_ticks(
            state.instigator_origin_id,
            state.selector_id,
            limit=MAX_TICKS,
            statuses=[TickStatus.SUCCESS, TickStatus.FAILURE],
        )
    return ticks


# --- events -----------------------------------------------------------------------------------------


def _mat_event(mat: Mat, base_url: str) -> Event:
    url = f"{base_url}/runs/{mat.run_id}" if mat.run_id else None
    kind = EVENT_KIND_BY_ASSET.get(mat.asset, "materialization")
    meta = mat.metadata
    if mat.asset == "training_submission":
        new = metadata_value(meta, "new_jobs")
        jobs = metadata_value(meta, "job_ids") or []
        if new is not None and new == 0:
            kind, summary = "adoption", f"training_submission adopted {len(jobs)} existing job(s): {', '.join(jobs)}"
        else:
            kind = "submission"
            summary = f"training_submission submitted {new if new is not None else '?'} new job(s): {', '.join(jobs)}"
    elif mat.asset == "trained_models":
        summary = (
            f"training_jobs_sensor reported trained_models: {metadata_value(meta, 'completed')} completed, "
            f"{metadata_value(meta, 'failed')} failed"
        )
    elif mat.asset == "validation_snapshot":
        summary = (
            f"validation_snapshot: best run {metadata_value(meta, 'best_run')}, "
            f"{metadata_value(meta, 'completed')} completed, {metadata_value(meta, 'failed')} failed"
        )
    elif mat.asset == "promotion_decision":
        summary = (
            f"promotion_decision: {metadata_value(meta, 'decision')} {metadata_value(meta, 'candidate')} "
            f"vs {metadata_value(meta, 'reference')}"
        )
    else:
        summary = f"{mat.asset} materialized"
    return Event(at=mat.at, kind=kind, cycle_id=mat.partition, summary=summary, run_id=mat.run_id or None, url=url)


def _run_events(instance: dg.DagsterInstance, cycle_id: str, record: dg.RunRecord, base_url: str) -> list[Event]:
    run = record.dagster_run
    url = f"{base_url}/runs/{run.run_id}"
    events = []
    key = run.tags.get(VALIDATION_KEY_TAG, "")
    started = utc(record.start_time) or utc(record.create_timestamp)
    if started is not None:
        if ":retry" in key:
            events.append(
                Event(
                    at=started,
                    kind="retry",
                    cycle_id=cycle_id,
                    summary=f"{run.job_name} retried by training_jobs_sensor ({key})",
                    run_id=run.run_id,
                    url=url,
                )
            )
        events.append(
            Event(
                at=started,
                kind="run_start",
                cycle_id=cycle_id,
                summary=f"{run.job_name} started",
                run_id=run.run_id,
                url=url,
            )
        )
    failures = []
    for event_record in _run_detail_events(instance, run.run_id):
        dagster_event = event_record.event_log_entry.dagster_event
        data = dagster_event.event_specific_data if dagster_event else None
        if (
            dagster_event
            and dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
            and data is not None
        ):
            events.append(
                Event(
                    at=utc(event_record.timestamp),  # type: ignore[arg-type]
                    kind="check",
                    cycle_id=cycle_id,
                    summary=f"check {data.asset_key.to_user_string()}:{data.check_name} "
                    + ("passed" if data.passed else f"FAILED ({data.severity.value})"),
                    run_id=run.run_id,
                    url=url,
                )
            )
        elif data is not None and getattr(data, "error", None) is not None:
            failures.append(f"{dagster_event.step_key}: {data.error.message.strip().splitlines()[-1]}")
    ended = utc(record.end_time)
    if ended is not None:
        detail = f" ({'; '.join(failures)})" if failures else ""
        events.append(
            Event(
                at=ended,
                kind="run_end",
                cycle_id=cycle_id,
                summary=f"{run.job_name} ended {run.status.value}{detail}",
                run_id=run.run_id,
                url=url,
            )
        )
    return events


def _job_end_events(entry: CycleEntry, snapshot: ValidationSnapshotDoc | None) -> list[Event]:
    events = []
    for run in snapshot.runs if snapshot else ():
        at = utc(run.finished_at)
        if at is None:
            continue
        events.append(
            Event(
                at=at,
                kind="job_end",
                cycle_id=entry.cycle_id,
                summary=f"training job {run.job_id} ended {run.stage} after {fmt_num(run.running_s, 1)} s "
                f"(cost ${fmt_num(run.cost_usd, 2)})",
                url=run.url if (run.url or "").startswith(("http://", "https://")) else None,
            )
        )
    return events


def _tick_events(ticks: Sequence[Any], selected: set[str], select_all: bool, base_url: str) -> list[Event]:
    events = []
    for tick in ticks:
        cycles = sorted(
            {key.split(":")[1] for key in tick.run_keys if key.startswith("validate:") and key.count(":") >= 2}
        )
        if tick.status == TickStatus.FAILURE:
            if not select_all:
                continue
            message = tick.error.message.strip().splitlines()[-1] if tick.error else "failed"
            summary, cycle = f"{SENSOR_NAME} tick failed: {message}", None
        else:
            cycles = [c for c in cycles if c in selected]
            if not cycles:
                continue
            summary, cycle = f"{SENSOR_NAME} requested validation_job for {', '.join(cycles)}", cycles[0]
        run_id = tick.run_ids[0] if tick.run_ids else None
        events.append(
            Event(
                at=utc(tick.timestamp),  # type: ignore[arg-type]
                kind="sensor_tick",
                cycle_id=cycle,
                summary=summary,
                run_id=run_id,
                url=f"{base_url}/runs/{run_id}" if run_id else None,
            )
        )
    return events


def _rollback_events(history: Sequence[Champion], selected: set[str], select_all: bool, base_url: str) -> list[Event]:
    """Each rollback in the registry history (the record of it; the UI has it as an observation of
    promotion_decision), with its reason; with a cycle range, those restoring a selected cycle's model."""
    events = []
    for entry in history:
        at = utc(entry.promoted_at)
        if not entry.rollback or at is None or not (select_all or entry.cycle_id in selected):
            continue
        events.append(
            Event(
                at=at,
                kind="rollback",
                cycle_id=entry.cycle_id,
                summary=f"{entry.decision_id}: champion rolled back from {entry.replaced or '-'} to {entry.model_id} "
                f"(holdout MAE {fmt_num(entry.holdout_mae)}, human {fmt_num(entry.human_mae)}); "
                f"reason: {entry.decision_reason}",
                url=f"{base_url}/assets/promotion_decision",
            )
        )
    return events


# --- the report -------------------------------------------------------------------------------------


def collect_report(
    instance: dg.DagsterInstance,
    artifacts: CycleArtifacts,
    registry: ChampionRegistry,
    cycles: Sequence[str] | None = None,
    *,
    base_url: str | None = None,
    repro_home: str = "kotone-repro",
    now: datetime | None = None,
    writing_run_id: str | None = None,
) -> Report:
    """The workflow log of ``cycles`` (default: every known cycle, in order); unknown ids raise ValueError.

    ``writing_run_id``: the Dagster run writing this report (the workflow_log asset's own run), shown as
    how it stood at writing rather than as its stored, unfinished STARTED."""
    known = known_cycles(instance, artifacts)
    selected = list(known) if cycles is None else list(cycles)
    unknown = [c for c in selected if c not in known]
    if unknown:
        raise ValueError(f"unknown cycle(s): {', '.join(unknown)}")
    base_url = (base_url or dagster_url()).rstrip("/")
    runs = _run_records(instance, selected)
    mats = _materializations(instance, selected)
    entries: list[CycleEntry] = []
    events: list[Event] = []
    for cycle_id in selected:
        entry = cycle_entry(artifacts, cycle_id, runs.get(cycle_id, []), mats.get(cycle_id, []), base_url, repro_home)
        entries.append(entry)
        for run in entry.dagster_runs:
            if writing_run_id is not None and run.run_id == writing_run_id:
                run.writes_report = True
                run.failed_steps = _failed_steps(instance, run.run_id)
        events += [_mat_event(m, base_url) for m in mats.get(cycle_id, [])]
        for record in runs.get(cycle_id, []):
            events += _run_events(instance, cycle_id, record, base_url)
        events += _job_end_events(entry, artifacts.read_if_present(cycle_id, ValidationSnapshotDoc))
    events += _tick_events(_sensor_ticks(instance), set(selected), cycles is None, base_url)
    events += _rollback_events(registry.history(), set(selected), cycles is None, base_url)
    # A stable sort: events with the same timestamp keep the order they were gathered in.
    events.sort(key=lambda e: e.at)

    champion = registry.current()
    notes = []
    if entries and not any(e.kind == "sensor_tick" for e in events):
        notes.append(
            f"no stored ticks of {SENSOR_NAME}: the cycles ran through the in-process runner (tests, benchmarks), "
            "which evaluates the sensor without recording ticks; its reports appear as trained_models events"
        )
    # One shell session for all cycles: KOTONE_HOME once, each cycle's own settings on its line.
    home_prefix = env_prefix({"KOTONE_HOME": repro_home})
    repro_all = [f"export {home_prefix}", *(entry.repro[0].removeprefix(f"{home_prefix} ") for entry in entries)]
    return Report(
        generated_at=now or datetime.now(UTC),
        dagster_url=base_url,
        home=str(artifacts.home),
        champion=champion.model_id if champion else None,
        champion_holdout_mae=champion.holdout_mae if champion else None,
        champion_human_mae=champion.human_mae if champion else None,
        cycles=entries,
        events=events,
        repro_all=repro_all if entries else [],
        notes=notes,
    )
