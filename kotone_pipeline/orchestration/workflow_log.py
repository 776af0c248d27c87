"""Collect the workflow log from the Dagster instance, the champion registry and the cycle documents.

Everything comes from records the pipeline itself wrote: run records (filtered by the partition tag),
materialization and asset-check events from the event log, ticks of ``training_jobs_sensor`` where the
daemon stored them, the champion registry and the per-cycle JSON documents. Numbers are copied from
those documents, never recomputed here. Rendering lives in ``kotone_pipeline.domain.workflow_log``.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from kotone_pipeline.compat.dagster import InstigatorType, TickStatus
from kotone_pipeline.cycle.documents import (
    AttemptsDoc,
    AugmentedPairsDoc,
    EvalSummaryDoc,
    HardDimsDoc,
    PromotionDecisionDoc,
    ReviewedRequestsDoc,
    ServedRequestsDoc,
    SplitDatasetDoc,
    TrainingSubmissionDoc,
    ValidationSnapshotDoc,
    current_jobs,
)
from kotone_pipeline.cycle.steps import STAGES
from kotone_pipeline.domain.jsonl import atomic_writer
from kotone_pipeline.domain.schemas import EvalSummary, GateDecision, GateThresholds
from kotone_pipeline.domain.workflow_log import (
    CycleEntry,
    DagsterRun,
    Event,
    Link,
    MetricDelta,
    PeopleCounts,
    Report,
    TrainingRun,
    fmt_num,
    render_plots,
    to_html,
    to_markdown,
)
from kotone_pipeline.orchestration.partitions import cycles as cycles_partitions
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.settings import load_settings

DAGSTER_URL_ENV = "KOTONE_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
PARTITION_TAG = "dagster/partition"
VALIDATION_KEY_TAG = "kotone/validation_key"  # sensors.py's tag; not imported to keep sensors out of the CLI path
SENSOR_NAME = "training_jobs_sensor"
REPORTS_DIR = "reports"
MD_FILE, HTML_FILE = "workflow_log.md", "workflow_log.html"
STEPS = STAGES
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


def _utc(ts: float | datetime | str | None) -> datetime | None:
    if ts is None or ts == "":
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if isinstance(ts, str):
        try:
            parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class _Mat:
    asset: str
    partition: str
    at: datetime
    run_id: str
    metadata: Mapping[str, Any]


def _metadata_value(metadata: Mapping[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def _materializations(instance: dg.DagsterInstance, selected: Sequence[str]) -> dict[str, list[_Mat]]:
    by_cycle: dict[str, list[_Mat]] = defaultdict(list)
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
                    _Mat(asset, mat.partition, _utc(record.timestamp), record.run_id or "", mat.metadata)  # type: ignore[arg-type]
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


# --- per cycle --------------------------------------------------------------------------------------


def _focus_why(hard: HardDimsDoc) -> str:
    maes = ", ".join(f"{d} {fmt_num(hard.by_dim.get(d))}" for d in hard.focus)
    if hard.source == "forced":
        return f"forced by KOTONE_FORCED_HARD_DIMS (probe MAE {maes})"
    what = {
        "wandb_failures": "the last candidate's W&B failure table",
        "reviewed": f"{hard.reviewed_rows} reviewed requests people sent",
    }.get(hard.source, "the probe set")
    why = f"top-{hard.k} MAE of {hard.eval_model_id or 'the current model'} on {what}: {maes}"
    if hard.wandb_failures_stale:
        why += f" (stale W&B snapshot, {hard.wandb_failures_snapshot_age_s} s old)"
    return why


def _repro_env(
    home: str,
    submission: TrainingSubmissionDoc | None,
    hard: HardDimsDoc | None,
    decision: GateDecision | None,
) -> dict[str, str]:
    """The settings a cycle's documents show it ran with, where they differ from the defaults."""
    env: dict[str, str] = {"KOTONE_HOME": home}
    if submission:
        if submission.runs:
            env["KOTONE_CAMPAIGN_SIZE"] = str(len(submission.runs))
        if submission.trainer != "local":
            env["KOTONE_TRAINER"] = submission.trainer
        if submission.backend == "hf":
            env["KOTONE_JOB_BACKEND"] = "hf"
        if submission.dataset.store == "hf":
            env["KOTONE_DATASET_STORE"] = "hf"
            env["KOTONE_HF_DATASET_REPO"] = submission.dataset.name
    if hard:
        if hard.k != 2:
            env["KOTONE_HARD_DIM_K"] = str(hard.k)
        if hard.source == "forced":
            env["KOTONE_FORCED_HARD_DIMS"] = ",".join(hard.focus)
        elif hard.source == "wandb_failures":
            env["KOTONE_HARD_DIMS_SOURCE"] = "wandb_failures"
    defaults = GateThresholds()
    for name, var in (
        ("min_improvement", "KOTONE_MIN_IMPROVEMENT"),
        ("max_dim_regression", "KOTONE_MAX_DIM_REGRESSION"),
        ("max_human_regression", "KOTONE_MAX_HUMAN_REGRESSION"),
    ):
        value = getattr(decision.thresholds, name) if decision else None
        if value is not None and value != getattr(defaults, name):
            env[var] = str(value)
    return env


def _env_prefix(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def _mae(summary: EvalSummary | None) -> float | None:
    return summary.vector_mae if summary is not None else None


def _cycle_entry(
    artifacts: CycleArtifacts,
    cycle_id: str,
    runs: list[dg.RunRecord],
    mats: list[_Mat],
    base_url: str,
    repro_home: str,
) -> CycleEntry:
    served = artifacts.read_if_present(cycle_id, ServedRequestsDoc)
    reviewed = artifacts.read_if_present(cycle_id, ReviewedRequestsDoc)
    eval_doc = artifacts.read_if_present(cycle_id, EvalSummaryDoc)
    hard = artifacts.read_if_present(cycle_id, HardDimsDoc)
    augmented = artifacts.read_if_present(cycle_id, AugmentedPairsDoc)
    split = artifacts.read_if_present(cycle_id, SplitDatasetDoc)
    submission = artifacts.read_if_present(cycle_id, TrainingSubmissionDoc)
    attempts = artifacts.read_if_present(cycle_id, AttemptsDoc)
    snapshot = artifacts.read_if_present(cycle_id, ValidationSnapshotDoc)
    decision_doc = artifacts.read_if_present(cycle_id, PromotionDecisionDoc)
    present = (served, reviewed, eval_doc, hard, augmented, split, submission, snapshot, decision_doc)
    done = [name for name, doc in zip(STEPS, present, strict=True) if doc is not None]
    entry = CycleEntry(cycle_id=cycle_id, stage=done[-1] if done else "created")

    if served or reviewed:
        entry.people = PeopleCounts(
            logged=served.logged if served else 0,
            waiting=served.waiting_for_review if served else 0,
            reviewed=reviewed.labelled if reviewed else 0,
            to_training=reviewed.to_training if reviewed else 0,
            to_field=reviewed.to_field if reviewed else 0,
            field_total=reviewed.field_total if reviewed else 0,
        )
    if hard:
        entry.focus_dims = list(hard.focus)
        entry.focus_why = _focus_why(hard)
        entry.hard_dim_source, entry.hard_dim_k = hard.source, hard.k
    if eval_doc:
        entry.champion_before = eval_doc.champion.model_id if eval_doc.champion else None
    if augmented:
        entry.rows_added = augmented.counts.get("total")
    if split:
        entry.dataset_version, entry.dataset_uri, entry.dataset_store = (
            split.dataset.version,
            split.dataset.uri,
            split.dataset.store,
        )
    if submission:
        entry.trainer, entry.backend = submission.trainer, submission.backend
        entry.hparams_patch = dict(submission.hparams_decision.patch)
        entry.hparams_reasons = list(submission.hparams_decision.reasons)

    # Training runs: the submission's latest jobs, completed by the snapshot's stages, timings, cost and metrics.
    validated = {r.run_id: r for r in snapshot.runs} if snapshot else {}
    jobs = current_jobs(submission, attempts) if submission else {}
    for run in submission.runs if submission else ():
        job = jobs[run.run_id]
        seen = validated.get(run.run_id)
        entry.training_runs.append(
            TrainingRun(
                run_id=run.run_id,
                job_id=seen.job_id if seen else job.job_id,
                stage=seen.stage if seen else job.stage,
                url=(seen.url if seen else None) or job.url,
                adopted=job.adopted,
                hparams=run.hparams,
                running_s=seen.running_s if seen else None,
                cost_usd=seen.cost_usd if seen else None,
                model_uri=seen.model_uri if seen else None,
                validation_mae=_mae(seen.validation) if seen else None,
                holdout_mae=_mae(seen.holdout) if seen else None,
                human_mae=_mae(seen.human) if seen else None,
            )
        )

    for record in runs:
        run = record.dagster_run
        key = run.tags.get(VALIDATION_KEY_TAG, "")
        entry.dagster_runs.append(
            DagsterRun(
                run_id=run.run_id,
                job_name=run.job_name,
                status=run.status.value,
                started_at=_utc(record.start_time),
                ended_at=_utc(record.end_time),
                url=f"{base_url}/runs/{run.run_id}",
                retry_of=key.partition(":retry")[0] if ":retry" in key else None,
            )
        )

    # Outputs.
    entry.artifacts["cycle_dir"] = str(artifacts.cycle_dir(cycle_id))
    for name in done:
        entry.artifacts[name] = str(artifacts.path(cycle_id, f"{name}.json"))
    playbook = artifacts.path(cycle_id, "failure_playbook.md")
    if playbook.is_file():
        entry.artifacts["failure_playbook"] = str(playbook)
    best = snapshot.best if snapshot else None
    entry.models = {f"{cycle_id}/{r.run_id}": r.model_uri for r in entry.training_runs if r.model_uri}
    if snapshot:
        entry.cost_usd = snapshot.total_cost_usd
        times = [r.running_s for r in snapshot.runs if r.running_s is not None]
        entry.training_s = max(times) if times else None

    # Metric delta, copied from the decision document.
    if decision_doc:
        decision = decision_doc.decision
        after = decision_doc.champion_after
        entry.champion_after = after.model_id if after else None
        entry.delta = MetricDelta(
            decision="promote" if decision.promote else "keep",
            forced=decision.forced,
            reference_kind=decision.reference_kind,
            reference_id=decision.reference_id,
            holdout_before=decision.reference_holdout_mae,
            holdout_candidate=decision.candidate_holdout_mae,
            holdout_after=after.holdout_mae if after else None,
            human_before=decision.reference_human_mae,
            human_candidate=decision.candidate_human_mae,
            human_after=after.human_mae if after else None,
            primary=decision.primary,
            field_rows=decision.field_rows,
            field_before=decision.reference_field_mae,
            field_candidate=decision.candidate_field_mae,
            field_after=decision.candidate_field_mae if decision.promote else decision.reference_field_mae,
            per_dim_delta=dict(decision.per_dim_delta),
            candidate_per_dim_mae=dict(best.holdout.per_dim_mae) if best and best.holdout else {},
            reasons=list(decision.reasons),
        )

    # Wall time: from the first Dagster run of the cycle to its decision.
    starts = [r.started_at for r in entry.dagster_runs if r.started_at is not None]
    decided = [m.at for m in mats if m.asset == "promotion_decision"]
    if starts and decided:
        entry.wall_s = round((min(decided) - min(starts)).total_seconds(), 2)

    entry.evidence = _evidence(entry, eval_doc, decision_doc, split)
    entry.repro = _repro(entry, submission, hard, decision_doc, repro_home)
    return entry


def _tracking_links(label: str, tracking: Mapping[str, Any] | None) -> list[Link]:
    if not tracking:
        return []
    links = []
    if tracking.get("wandb_url"):
        links.append(Link(label=f"W&B {label} run", url=tracking["wandb_url"]))
    elif tracking.get("wandb_run_dir"):
        command = tracking.get("wandb_sync_command") or f"wandb sync {tracking['wandb_run_dir']}"
        links.append(
            Link(label=f"W&B {label} run (offline)", detail=f"{tracking['wandb_run_dir']}; upload with `{command}`")
        )
    if tracking.get("weave_evaluation_url"):
        links.append(Link(label=f"Weave {label} traces", url=tracking["weave_evaluation_url"]))
    return links


def _artifact_links(dataset_artifact: str | None, decision_tracking: Mapping[str, Any]) -> list[Link]:
    """The W&B artifacts of the cycle: the dataset version its runs used and the model it promoted."""
    links = []
    dataset = dataset_artifact or decision_tracking.get("wandb_dataset_artifact")
    if dataset:
        links.append(Link(label="W&B dataset artifact", detail=f"`{dataset}` (type dataset; used by the cycle run)"))
    model = decision_tracking.get("wandb_model_artifact")
    if model:
        links.append(Link(label="W&B model artifact", detail=f"`{model}` (type model; aliases cycle-<id>, champion)"))
    return links


def _evidence(
    entry: CycleEntry,
    eval_doc: EvalSummaryDoc | None,
    decision_doc: PromotionDecisionDoc | None,
    split: SplitDatasetDoc | None,
) -> list[Link]:
    links = [Link(label=f"Dagster {r.job_name} run {r.run_id[:8]}", url=r.url) for r in entry.dagster_runs]
    links += _tracking_links("eval", eval_doc.tracking if eval_doc else None)
    dataset_tracking = split.tracking if split else {}
    links += _tracking_links(
        "dataset", {k.replace("wandb_dataset_", "wandb_", 1): v for k, v in dataset_tracking.items()}
    )
    decision_tracking = decision_doc.tracking if decision_doc else {}
    links += _tracking_links("cycle", decision_tracking)
    links += _artifact_links(dataset_tracking.get("wandb_dataset_artifact"), decision_tracking)
    for run in entry.training_runs:
        if run.url and run.url.startswith(("http://", "https://")):
            links.append(Link(label=f"HF job {run.job_id}", url=run.url))
    uri = split.dataset.uri if split else ""
    if uri.startswith(("http://", "https://")):
        links.append(Link(label=f"HF dataset commit {entry.dataset_version}", url=uri))
    return links


def _repro(
    entry: CycleEntry,
    submission: TrainingSubmissionDoc | None,
    hard: HardDimsDoc | None,
    decision_doc: PromotionDecisionDoc | None,
    home: str,
) -> list[str]:
    env = _repro_env(home, submission, hard, decision_doc.decision if decision_doc else None)
    lines = [f"{_env_prefix(env)} kotone cycle new {entry.cycle_id} --run"]
    for run in entry.training_runs:
        if run.model_uri:
            lines.append(
                f"kotone predict --model {shlex.quote(run.model_uri)} 'something calm for a bedtime-story app'"
            )
            if entry.dataset_store == "local" and entry.dataset_uri:
                holdout = str(Path(entry.dataset_uri) / "holdout.jsonl")
                lines.append(
                    f"kotone model eval --model {shlex.quote(run.model_uri)} --data {shlex.quote(holdout)} --json"
                )
    return lines


# --- events -----------------------------------------------------------------------------------------


def _mat_event(mat: _Mat, base_url: str) -> Event:
    url = f"{base_url}/runs/{mat.run_id}" if mat.run_id else None
    kind = EVENT_KIND_BY_ASSET.get(mat.asset, "materialization")
    meta = mat.metadata
    if mat.asset == "training_submission":
        new = _metadata_value(meta, "new_jobs")
        jobs = _metadata_value(meta, "job_ids") or []
        if new is not None and new == 0:
            kind, summary = "adoption", f"training_submission adopted {len(jobs)} existing job(s): {', '.join(jobs)}"
        else:
            kind = "submission"
            summary = f"training_submission submitted {new if new is not None else '?'} new job(s): {', '.join(jobs)}"
    elif mat.asset == "trained_models":
        summary = (
            f"training_jobs_sensor reported trained_models: {_metadata_value(meta, 'completed')} completed, "
            f"{_metadata_value(meta, 'failed')} failed"
        )
    elif mat.asset == "validation_snapshot":
        summary = (
            f"validation_snapshot: best run {_metadata_value(meta, 'best_run')}, "
            f"{_metadata_value(meta, 'completed')} completed, {_metadata_value(meta, 'failed')} failed"
        )
    elif mat.asset == "promotion_decision":
        summary = (
            f"promotion_decision: {_metadata_value(meta, 'decision')} {_metadata_value(meta, 'candidate')} "
            f"vs {_metadata_value(meta, 'reference')}"
        )
    else:
        summary = f"{mat.asset} materialized"
    return Event(at=mat.at, kind=kind, cycle_id=mat.partition, summary=summary, run_id=mat.run_id or None, url=url)


def _run_events(instance: dg.DagsterInstance, cycle_id: str, record: dg.RunRecord, base_url: str) -> list[Event]:
    run = record.dagster_run
    url = f"{base_url}/runs/{run.run_id}"
    events = []
    key = run.tags.get(VALIDATION_KEY_TAG, "")
    started = _utc(record.start_time) or _utc(record.create_timestamp)
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
                    at=_utc(event_record.timestamp),  # type: ignore[arg-type]
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
    ended = _utc(record.end_time)
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
        at = _utc(run.finished_at)
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
                at=_utc(tick.timestamp),  # type: ignore[arg-type]
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
        at = _utc(entry.promoted_at)
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
) -> Report:
    """The workflow log of ``cycles`` (default: every known cycle, in order); unknown ids raise ValueError."""
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
        entry = _cycle_entry(artifacts, cycle_id, runs.get(cycle_id, []), mats.get(cycle_id, []), base_url, repro_home)
        entries.append(entry)
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
    home_prefix = _env_prefix({"KOTONE_HOME": repro_home})
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


@dataclass
class RenderedReport:
    markdown: str
    html: str
    plots: dict[str, bytes]


def render_report(report: Report) -> RenderedReport:
    plots = render_plots(report)
    return RenderedReport(to_markdown(report, plots), to_html(report, plots), plots)


def write_report_files(directory: Path, rendered: RenderedReport) -> dict[str, Path]:
    """``workflow_log.md`` and ``workflow_log.html`` under ``directory``, each written atomically."""
    paths = {"md": Path(directory) / MD_FILE, "html": Path(directory) / HTML_FILE}
    for kind, text in (("md", rendered.markdown), ("html", rendered.html)):
        with atomic_writer(paths[kind]) as handle:
            handle.write(text)
    return paths
