"""The workflow log's model: what each cycle set out to do, what ran, what it produced, how the metrics moved.

Filled by ``kotone_pipeline.orchestration.report_collection`` from the Dagster instance and the cycle
documents; rendered by ``render`` (markdown, self-contained HTML, JSON) and ``plots`` (PNG).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EventKind = Literal[
    "run_start",
    "run_end",
    "materialization",
    "submission",
    "adoption",
    "retry",
    "job_end",
    "sensor_report",
    "sensor_tick",
    "validation",
    "check",
    "decision",
    "rollback",  # a person made an earlier champion current again (`kotone champion rollback`)
]
Decision = Literal["promote", "keep", "pending"]
PLOTS: tuple[tuple[str, str], ...] = (
    ("holdout_mae", "Champion vs candidate holdout MAE by cycle"),
    ("field_mae", "Field-set MAE (reviewed requests people sent) by cycle"),
    ("per_dim_mae", "Per-dim holdout MAE of each cycle's candidate"),
    ("cost_wall", "Cost and wall time by cycle"),
)


class Link(BaseModel):
    """A piece of evidence: a URL when there is one, else what to look at (an offline directory)."""

    label: str
    url: str | None = None
    detail: str | None = None


class DagsterRun(BaseModel):
    run_id: str
    job_name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    url: str
    retry_of: str | None = None  # the validation key this run retried
    # The run that wrote this report (the workflow_log asset runs inside validation_job): its stored status is
    # still STARTED while it writes, so the report says what it knows instead (see ``run_status``).
    writes_report: bool = False
    failed_steps: list[str] = Field(default_factory=list)  # of the writing run, up to the report


def run_status(run: DagsterRun) -> str:
    """The run's status as the report shows it: the stored one, or for the run writing the report, how it
    stood when it wrote it (a report rebuilt after the run ended shows the stored end status)."""
    if not run.writes_report:
        return run.status
    if run.failed_steps:
        return f"running, wrote this report; failed so far: {', '.join(run.failed_steps)}"
    return "running, wrote this report; every step before it succeeded"


class TrainingRun(BaseModel):
    run_id: str
    job_id: str
    stage: str
    url: str | None = None
    adopted: bool = False
    hparams: dict[str, Any] = Field(default_factory=dict)
    running_s: float | None = None
    cost_usd: float | None = None
    model_uri: str | None = None
    validation_mae: float | None = None
    holdout_mae: float | None = None
    human_mae: float | None = None


class MetricDelta(BaseModel):
    """Numbers copied from the promotion_decision document (and the candidate's validation_snapshot row)."""

    decision: Decision
    forced: bool = False
    reference_kind: str | None = None
    reference_id: str | None = None
    holdout_before: float | None = None
    holdout_candidate: float | None = None
    holdout_after: float | None = None
    human_before: float | None = None
    human_candidate: float | None = None
    human_after: float | None = None
    primary: str = "holdout"  # the set whose improvement decided ("field" once the field set is large enough)
    field_rows: int = 0
    field_before: float | None = None
    field_candidate: float | None = None
    field_after: float | None = None
    per_dim_delta: dict[str, float] = Field(default_factory=dict)
    candidate_per_dim_mae: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


class PeopleCounts(BaseModel):
    """What the cycle took from the request log and from people's reviews."""

    logged: int = 0  # requests served since the previous cycle
    waiting: int = 0  # logged requests nobody had reviewed when the cycle cut the log
    reviewed: int = 0  # labelled reviews since the previous cycle
    to_training: int = 0
    to_field: int = 0
    field_total: int = 0  # the field set this cycle's models were scored on


class CycleEntry(BaseModel):
    cycle_id: str
    stage: str  # the last step whose document exists, or "created"
    # goal
    focus_dims: list[str] = Field(default_factory=list)
    focus_why: str = ""
    hard_dim_source: str | None = None
    hard_dim_k: int | None = None
    # inputs
    champion_before: str | None = None
    dataset_version: str | None = None
    dataset_uri: str | None = None
    dataset_store: str | None = None
    rows_added: int | None = None
    trainer: str | None = None
    backend: str | None = None
    hparams_patch: dict[str, Any] = Field(default_factory=dict)
    hparams_reasons: list[str] = Field(default_factory=list)
    # automated action
    dagster_runs: list[DagsterRun] = Field(default_factory=list)
    training_runs: list[TrainingRun] = Field(default_factory=list)
    # outputs
    artifacts: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)  # model id -> where it is (directory or repo@sha)
    champion_after: str | None = None
    # evidence and numbers
    evidence: list[Link] = Field(default_factory=list)
    delta: MetricDelta | None = None
    cost_usd: float | None = None
    wall_s: float | None = None
    training_s: float | None = None
    repro: list[str] = Field(default_factory=list)
    people: PeopleCounts | None = None  # the flywheel's counts, once the cycle cut the request log


class Event(BaseModel):
    at: datetime  # UTC
    kind: EventKind
    cycle_id: str | None = None
    summary: str
    run_id: str | None = None
    url: str | None = None


class Report(BaseModel):
    generated_at: datetime
    dagster_url: str
    home: str
    champion: str | None = None
    champion_holdout_mae: float | None = None
    champion_human_mae: float | None = None
    cycles: list[CycleEntry] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    repro_all: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# --- cycle ranges -----------------------------------------------------------------------------------


def select_cycle_range(spec: str | None, known: Sequence[str]) -> list[str]:
    """``A..B`` (inclusive, in cycle order), ``A..``, ``..B`` or a single ``A``; ValueError names what is wrong."""
    if spec is None or not spec.strip():
        return list(known)
    spec = spec.strip()
    if ".." in spec:
        first, _, last = spec.partition("..")
        if ".." in last:
            raise ValueError(f"--cycles {spec!r}: use A..B, A.. or ..B")
    else:
        first = last = spec
    first, last = first.strip(), last.strip()
    for name in (first, last):
        if name and name not in known:
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise ValueError(f"--cycles {spec!r}: unknown cycle {name!r} (known: {shown or 'none'})")
    start = known.index(first) if first else 0
    stop = known.index(last) if last else len(known) - 1
    if start > stop:
        raise ValueError(f"--cycles {spec!r}: {first!r} comes after {last!r}")
    return list(known[start : stop + 1])


# --- formatting helpers ----------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def fmt_time(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"
