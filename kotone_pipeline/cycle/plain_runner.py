"""The whole cycle without Dagster: the plain-call benchmark's baseline and the headless fallback. It calls
the same step functions the assets call, so both measure the same work."""

from __future__ import annotations

import time
from collections.abc import Sequence

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.dataset import step_augmented_pairs, step_split_dataset
from kotone_pipeline.cycle.evaluation import step_eval_summary, step_hard_dims
from kotone_pipeline.cycle.flywheel import (
    step_reviewed_requests,
    step_served_requests,
)
from kotone_pipeline.cycle.polling import cycle_job_ids, poll_jobs, resubmit_timed_out
from kotone_pipeline.cycle.promotion import step_promotion_decision
from kotone_pipeline.cycle.submission import step_training_submission
from kotone_pipeline.cycle.tracking import (
    write_failure_playbook,
)
from kotone_pipeline.cycle.validation import RunsNotFinishedError, step_validation_snapshot
from kotone_pipeline.domain.data.schemas import (
    GateDecision,
)
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.datasets import DatasetStore
from kotone_pipeline.services.jobs import JobBackend
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline.services.tracker import Tracker


def run_cycle_plain(
    artifacts: CycleArtifacts,
    backend: JobBackend,
    store: DatasetStore,
    registry: ChampionRegistry,
    config: LoopConfig,
    cycle_id: str,
    earlier_cycles: Sequence[str],
    poll_interval_s: float = 0.2,
    timeout_s: float = 600,
    tracker: Tracker | None = None,
) -> GateDecision:
    log = RequestLog(artifacts.home)
    step_served_requests(artifacts, log, cycle_id, earlier_cycles)
    step_reviewed_requests(artifacts, log, config, cycle_id, earlier_cycles)
    step_eval_summary(artifacts, registry, config, cycle_id, tracker, earlier_cycles)
    step_hard_dims(artifacts, config, cycle_id)
    step_augmented_pairs(artifacts, config, cycle_id, earlier_cycles)
    step_split_dataset(artifacts, store, config, cycle_id, earlier_cycles, tracker)
    step_training_submission(artifacts, backend, config, cycle_id)
    deadline = time.monotonic() + timeout_s
    job_ids = list(cycle_job_ids(artifacts, cycle_id).values())
    while True:
        finished = poll_jobs(backend, {cycle_id: job_ids}).finished.get(cycle_id)
        if finished is not None:
            if not resubmit_timed_out(artifacts, backend, cycle_id, finished):
                break
            job_ids = list(cycle_job_ids(artifacts, cycle_id).values())
        if time.monotonic() > deadline:
            raise RunsNotFinishedError(f"cycle {cycle_id}: jobs still running after {timeout_s:.0f}s")
        time.sleep(poll_interval_s)
    write_failure_playbook(artifacts, cycle_id)
    step_validation_snapshot(artifacts, backend, store, cycle_id)
    return step_promotion_decision(artifacts, registry, config, cycle_id, tracker=tracker).decision
