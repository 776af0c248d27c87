"""One cycle's row of the workflow log, from its documents and its Dagster run records.

Numbers are copied from the cycle documents, never recomputed here; the instance reads and the event log
are in ``report_collection``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

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
from kotone_pipeline.cycle.tracking import model_aliases
from kotone_pipeline.domain.data.schemas import EvalSummary, GateDecision, GateThresholds
from kotone_pipeline.domain.report.model import (
    CycleEntry,
    DagsterRun,
    Link,
    MetricDelta,
    PeopleCounts,
    TrainingRun,
    fmt_num,
)
from kotone_pipeline.services.artifacts import CycleArtifacts

VALIDATION_KEY_TAG = "kotone/validation_key"  # sensors.py's tag; not imported to keep sensors out of the CLI path
STEPS = STAGES


def utc(ts: float | datetime | str | None) -> datetime | None:
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
class Mat:
    asset: str
    partition: str
    at: datetime
    run_id: str
    metadata: Mapping[str, Any]


def metadata_value(metadata: Mapping[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


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


def env_prefix(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def _mae(summary: EvalSummary | None) -> float | None:
    return summary.vector_mae if summary is not None else None


def cycle_entry(
    artifacts: CycleArtifacts,
    cycle_id: str,
    runs: list[dg.RunRecord],
    mats: list[Mat],
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
                started_at=utc(record.start_time),
                ended_at=utc(record.end_time),
                url=f"{base_url}/runs/{run.run_id}",
                retry_of=key.partition(":retry")[0] if ":retry" in key else None,
            )
        )

    # Outputs.
    entry.artifacts["cycle_dir"] = artifacts.cycle_location(cycle_id)
    for name in done:
        entry.artifacts[name] = artifacts.location(cycle_id, f"{name}.json")
    if artifacts.store.exists(artifacts.key(cycle_id, "failure_playbook.md")):
        entry.artifacts["failure_playbook"] = artifacts.location(cycle_id, "failure_playbook.md")
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


def _artifact_links(cycle_id: str, dataset_artifact: str | None, decision_tracking: Mapping[str, Any]) -> list[Link]:
    """The W&B artifacts of the cycle: the dataset version its runs used and the model it promoted."""
    links = []
    dataset = dataset_artifact or decision_tracking.get("wandb_dataset_artifact")
    if dataset:
        links.append(Link(label="W&B dataset artifact", detail=f"`{dataset}` (type dataset; used by the cycle run)"))
    model = decision_tracking.get("wandb_model_artifact")
    if model:
        links.append(
            Link(
                label="W&B model artifact",
                detail=f"`{model}` (type model; aliases {', '.join(model_aliases(cycle_id))})",
            )
        )
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
    links += _artifact_links(entry.cycle_id, dataset_tracking.get("wandb_dataset_artifact"), decision_tracking)
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
    lines = [f"{env_prefix(env)} kotone cycle new {entry.cycle_id} --run"]
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
