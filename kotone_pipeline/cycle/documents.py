"""The cycle documents: one pydantic model per JSON file under ``cycles/<id>/``, each with one writer.

| document              | written by                                   | read by                                   |
|-----------------------|----------------------------------------------|-------------------------------------------|
| champion_before       | the first step of a cycle (frozen at first use) | every later step                      |
| eval_summary          | ``step_eval_summary``                        | hard dims, augmentation, submission, gate |
| hard_dims             | ``step_hard_dims``                           | augmentation, submission, playbook, report|
| augmented_pairs       | ``step_augmented_pairs``                     | playbook, tracking, report                |
| split_dataset         | ``step_split_dataset``                       | submission, checks, tracking, report      |
| training_submission   | ``step_training_submission`` (the asset)     | polling, validation, checks, report       |
| attempts              | ``resubmit_timed_out`` (the polling path)    | polling, validation, report               |
| validation_snapshot   | ``step_validation_snapshot``                 | the gate, champion eval, report           |
| promotion_decision    | ``step_promotion_decision``                  | report, status, checks                    |

``CycleArtifacts.read(cycle_id, Model)`` and ``write(cycle_id, model)`` are the only way in and out; a file
that fails its model is named with its path and how to recover. Documents written before a field existed
still read: new fields have defaults.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from kotone_pipeline.domain.data.schemas import EvalSummary, GateDecision, HardDimReport, HyperParamDecision, SplitStats
from kotone_pipeline.services.champion import Champion
from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.jobs import JobSpec, JobState


class CycleDocument(BaseModel):
    """A cycle document; ``NAME`` is its file stem under the cycle's folder."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    NAME: ClassVar[str]


class ChampionBefore(CycleDocument):
    NAME: ClassVar[str] = "champion_before"
    champion: Champion | None = None


class EvalSummaryDoc(CycleDocument):
    NAME: ClassVar[str] = "eval_summary"
    cycle_id: str
    eval_id: str
    current_model: str  # "champion" or a baseline's name
    current_model_id: str
    champion: Champion | None = None
    champion_eval: dict[str, Any] | None = None  # how the champion was scored (run here, or recorded)
    summaries: dict[str, dict[str, EvalSummary]]  # model name -> dataset -> summary
    tracking: dict[str, Any] = Field(default_factory=dict)

    def summary(self, model: str, dataset: str) -> EvalSummary | None:
        return self.summaries.get(model, {}).get(dataset)


class HardDimsDoc(HardDimReport, CycleDocument):
    NAME: ClassVar[str] = "hard_dims"
    # When the rows came from the W&B failure table: where and how fresh (services.wandb_failures).
    wandb_failures_run_id: str | None = None
    wandb_failures_rows: int | None = None
    wandb_failures_fetched_at: str | None = None
    wandb_failures_stale: bool | None = None
    wandb_failures_snapshot_age_s: float | None = None
    wandb_failures_snapshot: str | None = None
    # Which rows picked each focus dim ("probe", "reviewed requests", "forced", ...), and the probe's
    # ranking beside people's when their reviewed requests picked the focus.
    focus_sources: dict[str, str] = Field(default_factory=dict)
    reviewed_rows: int = 0
    probe_by_dim: dict[str, float] = Field(default_factory=dict)

    def report(self) -> HardDimReport:
        return HardDimReport.model_validate(self.model_dump(include=set(HardDimReport.model_fields)))


class AugmentedPairsDoc(CycleDocument):
    NAME: ClassVar[str] = "augmented_pairs"
    cycle_id: str
    counts: dict[str, Any]
    focus: list[str]
    lexicon_version: str = ""  # the lexicon in effect that wrote and labelled the rows


class SplitDatasetDoc(CycleDocument):
    NAME: ClassVar[str] = "split_dataset"
    cycle_id: str
    dataset: DatasetRef
    stats: SplitStats
    rows: dict[str, int]
    tracking: dict[str, Any] = Field(default_factory=dict)  # the W&B dataset artifact and its run


class SmokeLimits(BaseModel):
    """Smoke-run limits a cycle's jobs were submitted with (re-submissions use the same)."""

    max_steps: int | None = None
    max_train_rows: int | None = None
    max_predict_rows: int | None = None


class JobRecord(BaseModel):
    """One job of a run, as the backend answered when it was submitted or adopted."""

    job_id: str
    stage: str
    url: str | None = None
    adopted: bool = False
    created_at: str | None = None
    attempt: int = 1

    @classmethod
    def of(cls, state: JobState) -> JobRecord:
        return cls(
            job_id=state.job_id,
            stage=state.stage,
            url=state.url,
            adopted=state.adopted,
            created_at=state.created_at,
            attempt=state.attempt,
        )


class SubmittedRun(JobRecord):
    run_id: str
    hparams: dict[str, Any]
    timeout_s: int  # what we sent: the budget counts it (a job's answer is not trusted to echo it)


class TrainingSubmissionDoc(CycleDocument):
    NAME: ClassVar[str] = "training_submission"
    cycle_id: str
    trainer: str
    backend: str
    dataset: DatasetRef
    hparams_decision: HyperParamDecision
    runs: list[SubmittedRun]
    job_env: dict[str, str] = Field(default_factory=dict)  # non-secret job settings, re-used by re-submission
    pricing: dict[str, Any] | None = None
    embeddings: dict[str, Any] | None = None
    smoke: SmokeLimits | None = None

    def run(self, run_id: str) -> SubmittedRun | None:
        return next((r for r in self.runs if r.run_id == run_id), None)

    def job_spec(self, run: SubmittedRun) -> JobSpec:
        """The one place a JobSpec is built: first submission and re-submission send the same thing."""
        smoke = self.smoke or SmokeLimits()
        return JobSpec(
            cycle_id=self.cycle_id,
            run_id=run.run_id,
            trainer=self.trainer,  # type: ignore[arg-type]
            hparams=run.hparams,
            dataset=self.dataset,
            timeout_s=run.timeout_s,
            env=self.job_env,
            max_steps=smoke.max_steps,
            max_train_rows=smoke.max_train_rows,
            max_predict_rows=smoke.max_predict_rows,
        )


class EarlierJob(BaseModel):
    job_id: str
    attempt: int
    stage: str
    message: str = ""


class RunAttempts(BaseModel):
    """A run's jobs after its first: the current one, the ones it replaced, or why it was not re-submitted."""

    current: JobRecord | None = None
    earlier_jobs: list[EarlierJob] = Field(default_factory=list)
    resubmit_refused: str | None = None


class AttemptsDoc(CycleDocument):
    """Re-submissions of timed-out runs: written only by the polling path (the sensor, or the plain runner)."""

    NAME: ClassVar[str] = "attempts"
    cycle_id: str
    runs: dict[str, RunAttempts] = Field(default_factory=dict)

    def of(self, run_id: str) -> RunAttempts:
        return self.runs.setdefault(run_id, RunAttempts())


def current_jobs(submission: TrainingSubmissionDoc, attempts: AttemptsDoc | None) -> dict[str, JobRecord]:
    """Each run's latest job: the re-submitted one when the polling path made a later attempt than the
    submission recorded (a re-materialized submission adopts the latest job, so either may be newer)."""
    result: dict[str, JobRecord] = {}
    for run in submission.runs:
        later = attempts.runs.get(run.run_id) if attempts else None
        if later is not None and later.current is not None and later.current.attempt > run.attempt:
            result[run.run_id] = later.current
        else:
            result[run.run_id] = run
    return result


class ValidatedRun(BaseModel):
    """One run as validation found it: its job's end, timings, cost and, when it completed, its metrics."""

    model_config = ConfigDict(protected_namespaces=())

    run_id: str
    job_id: str
    stage: str
    message: str | None = None
    hparams: dict[str, Any] = Field(default_factory=dict)
    url: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    running_s: float | None = None
    cost_usd: float | None = None
    attempt: int = 1
    validation: EvalSummary | None = None
    holdout: EvalSummary | None = None
    human: EvalSummary | None = None
    field: EvalSummary | None = None
    model_uri: str | None = None
    problems: list[str] = Field(default_factory=list)
    log_tail: str | None = None

    @property
    def completed(self) -> bool:
        return self.validation is not None


class ValidationSnapshotDoc(CycleDocument):
    NAME: ClassVar[str] = "validation_snapshot"
    cycle_id: str
    runs: list[ValidatedRun]
    best_run_id: str | None = None
    completed: int
    failed: int
    total_cost_usd: float = 0.0

    def run(self, run_id: str | None) -> ValidatedRun | None:
        return next((r for r in self.runs if r.run_id == run_id), None) if run_id else None

    @property
    def best(self) -> ValidatedRun | None:
        return self.run(self.best_run_id)


class PromotionDecisionDoc(CycleDocument):
    NAME: ClassVar[str] = "promotion_decision"
    cycle_id: str
    decision_id: str
    decision: GateDecision
    champion_before: Champion | None = None
    champion_after: Champion | None = None
    tracking: dict[str, Any] = Field(default_factory=dict)


class ServedRequestsDoc(CycleDocument):
    """Requests the served champion answered since the previous cycle's cut (``served_requests.jsonl``)."""

    NAME: ClassVar[str] = "served_requests"
    cycle_id: str
    after_seq: int  # the previous cycle's cut: requests with after_seq < seq <= upto_seq are this cycle's
    upto_seq: int
    logged: int
    unique: int
    masked: dict[str, int] = Field(default_factory=dict)  # email / url / phone replacements
    by_lang: dict[str, int] = Field(default_factory=dict)
    by_model: dict[str, int] = Field(default_factory=dict)
    waiting_for_review: int = 0  # logged requests nobody has reviewed, when the cut was made


class ReviewedRequestsDoc(CycleDocument):
    """People's reviews made since the previous cycle's cut, each request routed to one side."""

    NAME: ClassVar[str] = "reviewed_requests"
    cycle_id: str
    after_seq: int
    upto_seq: int
    reviews: int
    labelled: int
    skipped: int
    junk: int
    reviewers: list[str] = Field(default_factory=list)
    to_training: int = 0  # requests of this cycle routed to the training side (origin "reviewed")
    to_field: int = 0  # ... and to the field set (never trained on)
    training_total: int = 0  # the training side of every cycle so far
    field_total: int = 0  # the field set this cycle's models are scored on
    field_share: float
    weight: float  # the sample weight of reviewed training rows


# The documents a cycle writes, in order; the last one present is the cycle's stage.
STAGE_DOCUMENTS: tuple[type[CycleDocument], ...] = (
    ServedRequestsDoc,
    ReviewedRequestsDoc,
    EvalSummaryDoc,
    HardDimsDoc,
    AugmentedPairsDoc,
    SplitDatasetDoc,
    TrainingSubmissionDoc,
    ValidationSnapshotDoc,
    PromotionDecisionDoc,
)
