"""``validation_snapshot``: every finished run's recorded predictions scored beside the champion's."""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.cycle.champion_eval import RECORDED_PREDICTIONS, read_prediction_records
from kotone_pipeline.cycle.documents import (
    AttemptsDoc,
    TrainingSubmissionDoc,
    ValidatedRun,
    ValidationSnapshotDoc,
    current_jobs,
)
from kotone_pipeline.cycle.polling import gone_state
from kotone_pipeline.domain.model.metrics import score_prediction_records
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetStore
from kotone_pipeline.services.jobs import JobBackend, JobState


class RunsNotFinishedError(RuntimeError):
    pass


def step_validation_snapshot(
    artifacts: CycleArtifacts, backend: JobBackend, store: DatasetStore, cycle_id: str
) -> ValidationSnapshotDoc:
    """Per run: status, timings, cost and metrics on validation and holdout; best = lowest validation MAE."""
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    jobs = current_jobs(submission, artifacts.read_if_present(cycle_id, AttemptsDoc))
    job_ids = [job.job_id for job in jobs.values()]
    states = backend.statuses(job_ids)
    # Validation is requested once every job ended or vanished; a vanished job is recorded as DELETED.
    states = {j: states.get(j) or gone_state(j, cycle_id) for j in job_ids}
    pending = [j for j in job_ids if not states[j].terminal]
    if pending:
        raise RunsNotFinishedError(f"cycle {cycle_id}: runs not finished yet: {', '.join(pending)}")
    splits = store.load(submission.dataset)
    runs = []
    for run in submission.runs:
        state = states[jobs[run.run_id].job_id]
        entry = ValidatedRun(
            run_id=run.run_id,
            job_id=state.job_id,
            stage=state.stage,
            message=state.message,
            hparams=run.hparams,
            url=state.url,
            started_at=state.started_at,
            finished_at=state.finished_at,
            running_s=state.running_s,
            cost_usd=state.cost_usd,
            attempt=jobs[run.run_id].attempt,
        )
        if state.stage == "COMPLETED":
            out = backend.fetch_outputs(state, artifacts.path(cycle_id, f"runs/{run.run_id}"))
            artifacts.keep_files(cycle_id, f"runs/{run.run_id}", RECORDED_PREDICTIONS)
            for dataset in ("validation", "holdout", "human", "field"):
                optional = dataset in ("human", "field")
                if optional and not (splits.get(dataset) and (out / f"predictions_{dataset}.jsonl").is_file()):
                    continue  # an empty field set, or a version published before the set travelled with it
                records, bad = read_prediction_records(out / f"predictions_{dataset}.jsonl")
                entry.problems += bad
                summary, scored = score_prediction_records(
                    splits[dataset], records, model_id=f"{cycle_id}/{run.run_id}", dataset=dataset
                )
                setattr(entry, dataset, summary)
                # Kept so that a champion that cannot run here is still evaluated (evaluate_champion).
                artifacts.write_rows(cycle_id, f"runs/{run.run_id}/eval_rows_{dataset}", scored)
            entry.model_uri = _model_uri(state, out)
        else:
            entry.log_tail = backend.logs_tail(state.job_id, 20) if state.backend != "unknown" else ""
        runs.append(entry)
    completed = [r for r in runs if r.validation is not None]
    best = min(completed, key=lambda r: (r.validation.vector_mae, r.run_id), default=None)  # type: ignore[union-attr]
    doc = ValidationSnapshotDoc(
        cycle_id=cycle_id,
        runs=runs,
        best_run_id=best.run_id if best else None,
        completed=len(completed),
        failed=len(runs) - len(completed),
        total_cost_usd=sum(r.cost_usd or 0.0 for r in runs),
    )
    artifacts.write(cycle_id, doc)
    return doc


def _model_uri(state: JobState, out: Path) -> str:
    """The run's model: a Hub run pinned to the commit its outputs were fetched from (a branch can move),
    else the backend's ``repo@revision``, else the local output folder."""
    pinned = out / "outputs_revision.txt"
    if pinned.is_file() and "@" in (uri := pinned.read_text(encoding="utf-8").strip()):
        return uri
    if state.output_uri and "@" in state.output_uri:
        return state.output_uri
    return str(out / "model")
