"""Headless driver: run whole cycles through Dagster in-process (``kotone demo``, tests, benchmarks).

It does what the daemon does in production — materialize the cycle job, tick the training sensor
until it requests validation, run what it requests — against a persistent local instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import BaseModel

from kotone_pipeline.cycle.documents import (
    STAGE_DOCUMENTS,
    EvalSummaryDoc,
    HardDimsDoc,
    PromotionDecisionDoc,
    ReviewedRequestsDoc,
)
from kotone_pipeline.domain.data.jsonl import atomic_writer
from kotone_pipeline.domain.data.schemas import EvalSummary
from kotone_pipeline.domain.model.baselines import RuleBaseline
from kotone_pipeline.orchestration.partitions import CYCLE_TAG, cycles
from kotone_pipeline.orchestration.resources import configured_resource, resolve_home
from kotone_pipeline.orchestration.run_failures import explain, run_events
from kotone_pipeline.orchestration.sensors import training_jobs_sensor
from kotone_pipeline.services.jobs import validate_cycle_id
from kotone_pipeline.settings import load_settings

if TYPE_CHECKING:
    from kotone_pipeline.orchestration.driver import DagsterDriver

SENSOR_RESOURCES = ("kotone_home", "job_backend")
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


POSTGRES_STORAGE = """
storage:
  postgres:
    postgres_db:
      username: {env: DAGSTER_PG_USERNAME}
      password: {env: DAGSTER_PG_PASSWORD}
      hostname: {env: DAGSTER_PG_HOST}
      db_name: {env: DAGSTER_PG_DB}
      port: {env: DAGSTER_PG_PORT}
      scheme: postgresql+psycopg2
"""


def instance_yaml(env: Mapping[str, str] | None = None) -> str:
    """The repo's dagster.yaml, plus the Postgres storage block when KOTONE_DAGSTER_STORAGE=postgres."""
    text = REPO_DAGSTER_YAML.read_text(encoding="utf-8") if REPO_DAGSTER_YAML.is_file() else ""
    if load_settings(env).dagster_storage == "postgres":
        text += POSTGRES_STORAGE
    return text


def dagster_home(home: Path | None = None) -> Path:
    """``DAGSTER_HOME`` if set, else ``$KOTONE_HOME/dagster``; its dagster.yaml follows the repo's."""
    target = Path(load_settings().dagster_home or (resolve_home(str(home or "")) / "dagster")).resolve()
    target.mkdir(parents=True, exist_ok=True)
    config = target / "dagster.yaml"
    wanted = instance_yaml()
    if not config.exists() or config.read_text(encoding="utf-8") != wanted:
        with atomic_writer(config) as handle:
            handle.write(wanted)
    return target


def open_instance(home: Path | None = None) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(dagster_home(home)))


def _mae(summary: EvalSummary | None) -> float | None:
    return summary.vector_mae if summary is not None else None


class CycleFailedError(RuntimeError):
    """A Dagster run of the cycle failed, or the cycle did not finish in time; the message says where."""


class CycleReport(BaseModel):
    cycle_id: str
    champion_before: str | None
    champion_holdout_mae_before: float | None
    reference_holdout_mae_before: float
    candidate_holdout_mae: float | None
    champion_holdout_mae_after: float | None
    # On the hand-written human set: the reference the gate compared with, the candidate, the champion after.
    reference_human_mae_before: float | None = None
    candidate_human_mae: float | None = None
    champion_human_mae_after: float | None = None
    # The rule baseline on the same two sets (scored every cycle, never a gate reference; see the README).
    rule_holdout_mae: float | None = None
    rule_human_mae: float | None = None
    # On the field set (reviewed requests people sent): its size, which set decided, before / candidate / after.
    field_rows: int = 0
    decided_by: str = "holdout"
    reference_field_mae_before: float | None = None
    candidate_field_mae: float | None = None
    champion_field_mae_after: float | None = None
    reviewed: int = 0  # labelled reviews this cycle took in
    champion_after: str | None
    hard_dims: list[str]
    rows_added: int
    decision: str
    reasons: list[str]
    wall_s: float


class CycleRunner:
    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        progress: Callable[[str], None] = lambda _msg: None,
        poll_interval_s: float = 0.5,
        log_level: str = "WARNING",
        driver: DagsterDriver | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        """``driver``: submit through a running Dagster (webserver, daemon, code server), as the UI does:
        one run history, validation from the daemon's sensor ticks; without it, runs execute in this
        process and the sensor is evaluated here (tests and the overhead benchmark).
        ``heartbeat_s``: while a cycle waits for its jobs, repeat the progress line this often (a terminal);
        None: one line per change of stage or job state only (output piped to a file or another program)."""
        self.heartbeat_s = heartbeat_s
        self.defs = defs
        self.driver = driver
        self.instance = instance
        self.progress = progress
        self.poll_interval_s = poll_interval_s
        self.log_level = log_level
        self.resources = {key: configured_resource(r) for key, r in (defs.resources or {}).items()}
        self.artifacts = self.resources["kotone_home"].artifacts()
        self._cursor: str | None = None
        self._done_run_keys: set[str] = set()

    # --- partitions ------------------------------------------------------------------------------
    def new_cycle(self, cycle_id: str | None = None) -> str:
        existing = list(self.instance.get_dynamic_partitions(cycles.name))
        if cycle_id is None:
            cycle_id = f"cycle-{len(existing) + 1:03d}"
            while cycle_id in existing:
                cycle_id = f"{cycle_id}-x"
        validate_cycle_id(cycle_id)
        if cycle_id not in existing:
            self.instance.add_dynamic_partitions(cycles.name, [cycle_id])
        return cycle_id

    def cycles(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions(cycles.name))

    def unfinished_cycles(self) -> list[str]:
        """Cycles that started (some stage is recorded) but have no decision yet: a run that failed or
        was interrupted. They are finished before a new cycle opens, so none is left behind with a job."""
        return [
            c
            for c in self.cycles()
            if not self.artifacts.has(c, PromotionDecisionDoc)
            and any(self.artifacts.has(c, doc) for doc in STAGE_DOCUMENTS)
        ]

    # --- execution -------------------------------------------------------------------------------
    def _execute(self, job_name: str, partition_key: str | None = None, tags: dict[str, str] | None = None) -> None:
        if partition_key is not None:  # the same tags as the sensor's validation runs: one filter finds a cycle
            tags = {CYCLE_TAG: partition_key, **(tags or {})}
        if self.driver is not None:
            self._wait_launched(self.driver.launch(job_name, partition_key, tags), partition_key)
            return
        job = self.defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=self.instance,
            partition_key=partition_key,
            raise_on_error=False,
            tags=tags,
            # Step-level DEBUG lines drown the progress report; the full logs stay in the instance.
            run_config={"loggers": {"console": {"config": {"log_level": self.log_level}}}},
        )
        if not result.success:
            errors = [
                e.event_specific_data.error  # type: ignore[union-attr]
                for e in result.all_events
                if (e.is_step_failure or e.is_failure) and getattr(e.event_specific_data, "error", None)
            ]
            if any(error.cls_name == "DagsterExecutionInterruptedError" for error in errors):
                # Ctrl-C: the run is recorded as failed and a re-run continues from there; the command
                # ends with one line (cli handle_errors), not Dagster's stack trace.
                raise KeyboardInterrupt
            # Each failed step's error, or the run's own cause (a killed worker, a cancellation).
            raise CycleFailedError(f"{job_name} failed for {partition_key or 'base'}: {explain(result.all_events)}")

    def ensure_base(self) -> bool:
        """Materialize the base assets once (they also embed the base texts for the local trainer); True
        when this call did."""
        keys = [dg.AssetKey(k) for k in ("catalog", "teacher_pairs", "eval_sets")]
        if all(self.instance.get_latest_materialization_event(k) for k in keys):
            return False
        self.progress("materializing base assets (catalog, teacher_pairs, eval_sets)")
        self._execute("base_job")
        return True

    def _wait_launched(self, run_id: str, partition_key: str | None) -> None:
        from kotone_pipeline.orchestration.driver import TERMINAL, RunFailedError

        assert self.driver is not None
        try:
            self.driver.wait(run_id)
        except RunFailedError as exc:
            if exc.run.status not in TERMINAL:  # it did not end in time: nothing explains it yet
                raise CycleFailedError(f"{exc} for {partition_key or 'base'}") from None
            # Each failed step's error, or the run's own cause: a killed worker is explained only in its events.
            why = explain(run_events(self.instance, run_id))
            raise CycleFailedError(f"{exc} for {partition_key or 'base'}: {why}") from None

    def tick_sensor(self) -> int:
        """One evaluation of training_jobs_sensor; runs what it requests. Returns runs started."""
        # Only the resources the sensor uses: each tick builds them anew, and ticks run while training.
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self._cursor,
            resources={key: self.resources[key] for key in SENSOR_RESOURCES},
        )
        result = training_jobs_sensor(context)
        self._cursor = context.cursor
        if not isinstance(result, dg.SensorResult):
            return 0
        for event in result.asset_events or []:
            self.instance.report_runless_asset_event(event)
        started = 0
        for request in result.run_requests or []:
            if request.run_key in self._done_run_keys:
                continue
            self._done_run_keys.add(request.run_key)
            self.progress(f"sensor: jobs finished for {request.partition_key}; running validation_job")
            self._execute("validation_job", request.partition_key, tags=dict(request.tags))
            started += 1
        return started

    def _check_validation_runs(self, cycle_id: str) -> None:
        """With a driver the daemon runs validation; a failed validation run ends the wait with its reason."""
        assert self.driver is not None
        for run in self.driver.validation_runs(cycle_id):
            if run.run_id in self._done_run_keys:
                continue
            if run.status == dg.DagsterRunStatus.SUCCESS:
                self._done_run_keys.add(run.run_id)
                self.progress(
                    f"[{cycle_id}] validation_job run {run.run_id[:8]} (requested by training_jobs_sensor) done"
                )
            elif run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                why = explain(run_events(self.instance, run.run_id))
                raise CycleFailedError(
                    f"validation_job run {run.run_id[:8]} ended {run.status.value} for {cycle_id}: {why}"
                )

    def run_cycle(self, cycle_id: str, timeout_s: float = 900) -> CycleReport:
        start = time.monotonic()
        self.ensure_base()
        cycle_id = self.new_cycle(cycle_id)
        self.progress(
            f"[{cycle_id}] eval_summary -> hard_dims -> augmented_pairs -> split_dataset -> training_submission"
        )
        self._execute("cycle_job", cycle_id)
        deadline = start + timeout_s
        shown, shown_at = "", 0.0
        # One listing of the cycle's files per poll: with the state in an HF repo each look is a request.
        while f"{PromotionDecisionDoc.NAME}.json" not in (names := self.artifacts.names(cycle_id)):
            if time.monotonic() > deadline:
                raise CycleFailedError(f"cycle {cycle_id} did not finish within {timeout_s:.0f}s")
            state = self.waiting_state(cycle_id, names)
            now = time.monotonic()
            if state != shown or (self.heartbeat_s is not None and now - shown_at >= self.heartbeat_s):
                self.progress(f"[{cycle_id}] {state} ({now - start:.0f} s)")
                shown, shown_at = state, now
            if self.driver is not None:
                self._check_validation_runs(cycle_id)
                time.sleep(self.poll_interval_s)
            elif not self.tick_sensor():
                time.sleep(self.poll_interval_s)
        if self.driver is not None:
            # The decision is written inside a validation run that still records its end (and the report):
            # wait for it, so the command never stops the daemon under a running run.
            for run in self.driver.validation_runs(cycle_id):
                self._wait_launched(run.run_id, cycle_id)
        return self.report(cycle_id, wall_s=time.monotonic() - start)

    def waiting_state(self, cycle_id: str, names: set[str] | None = None) -> str:
        """The cycle's stage and its training jobs' stages, for the progress line while it waits (``names``: the
        cycle's files, when the caller has just listed them)."""
        from kotone_pipeline.cycle.polling import cycle_job_ids
        from kotone_pipeline.cycle.steps import STAGES

        names = self.artifacts.names(cycle_id) if names is None else names
        stage = next((s for s in reversed(STAGES) if f"{s}.json" in names), "created")
        if stage != "training_submission":
            return f"stage {stage}"
        backend_resource = self.resources["job_backend"]
        try:
            jobs = cycle_job_ids(self.artifacts, cycle_id)
            if backend_resource.kind != "local":
                # A remote backend is asked by the sensor alone (its calls are what is rate-limited and retried).
                return f"stage {stage}; {len(jobs)} training job(s) on {backend_resource.kind}, polled by the sensor"
            states = backend_resource.get_backend().statuses(list(jobs.values()))  # local: reads job folders
        except Exception as exc:  # a progress line must never stop the cycle; the sensor reports failures
            return f"stage {stage}; jobs: unknown ({type(exc).__name__})"
        parts = [f"{run} {states[job].stage if job in states else 'not reported yet'}" for run, job in jobs.items()]
        return f"stage {stage}; training jobs: {', '.join(parts)}"

    # --- reporting -------------------------------------------------------------------------------
    def report(self, cycle_id: str, wall_s: float) -> CycleReport:
        arts = self.artifacts
        eval_doc = arts.read(cycle_id, EvalSummaryDoc)
        decision_doc = arts.read(cycle_id, PromotionDecisionDoc)
        hard = arts.read(cycle_id, HardDimsDoc)
        reviewed = arts.read_if_present(cycle_id, ReviewedRequestsDoc)
        decision = decision_doc.decision
        before, after = decision_doc.champion_before, decision_doc.champion_after
        champion_holdout = eval_doc.summary("champion", "holdout")
        champion_mae_before = champion_holdout.vector_mae if before and champion_holdout else None
        if after is None:
            mae_after = None
        elif before and after.model_id == before.model_id:
            mae_after = champion_mae_before
        else:
            mae_after = decision.candidate_holdout_mae
        human_before, human_candidate = decision.reference_human_mae, decision.candidate_human_mae
        promoted = after is not None and (not before or after.model_id != before.model_id)
        human_after = human_candidate if promoted else (human_before if before else None)
        return CycleReport(
            cycle_id=cycle_id,
            champion_before=before.model_id if before else None,
            champion_holdout_mae_before=champion_mae_before,
            reference_holdout_mae_before=decision.reference_holdout_mae,
            candidate_holdout_mae=decision.candidate_holdout_mae,
            champion_holdout_mae_after=mae_after,
            reference_human_mae_before=human_before,
            candidate_human_mae=human_candidate,
            champion_human_mae_after=human_after,
            rule_holdout_mae=_mae(eval_doc.summary(RuleBaseline.model_id, "holdout")),
            rule_human_mae=_mae(eval_doc.summary(RuleBaseline.model_id, "human")),
            field_rows=decision.field_rows,
            decided_by=decision.primary,
            reference_field_mae_before=decision.reference_field_mae,
            candidate_field_mae=decision.candidate_field_mae,
            champion_field_mae_after=(
                decision.candidate_field_mae if promoted else (decision.reference_field_mae if before else None)
            ),
            reviewed=reviewed.labelled if reviewed else 0,
            champion_after=after.model_id if after else None,
            hard_dims=hard.focus,
            rows_added=len(arts.read_pairs(cycle_id, "augmented_pairs")),
            decision="promote" if decision.promote else "keep",
            reasons=decision.reasons,
            wall_s=round(wall_s, 2),
        )
