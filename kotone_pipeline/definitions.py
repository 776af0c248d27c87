"""The Dagster code location: ``dagster dev -w workspace.yaml`` (or ``kotone dev``) loads ``defs``."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from kotone_pipeline.orchestration.assets import base, cycle, flywheel, lexicon, report, validation
from kotone_pipeline.orchestration.checks import all_checks
from kotone_pipeline.orchestration.jobs import EXECUTOR, base_job, cycle_job, report_job, validation_job
from kotone_pipeline.orchestration.resources import bind_from_environment, resources_from_env
from kotone_pipeline.orchestration.sensors import nightly_cycle_sensor, training_jobs_sensor, workflow_log_sensor

ALL_ASSETS = [
    base.catalog,
    base.teacher_pairs,
    base.eval_sets,
    flywheel.served_requests,
    flywheel.reviewed_requests,
    cycle.eval_summary,
    cycle.hard_dims,
    cycle.augmented_pairs,
    cycle.split_dataset,
    cycle.training_submission,
    cycle.failure_playbook,
    lexicon.lexicon_patch,
    validation.trained_models,
    validation.validation_snapshot,
    validation.promotion_decision,
    report.workflow_log,
]


def build_definitions(env: Mapping[str, str] | None = None) -> dg.Definitions:
    """All definitions, configured from ``env`` (default: the process environment)."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=all_checks,
        jobs=[base_job, cycle_job, validation_job, report_job],
        sensors=[training_jobs_sensor, nightly_cycle_sensor, workflow_log_sensor],
        resources=bind_from_environment(resources_from_env(env)),
        # The code location's default executor: the implicit asset job an asset page's "Materialize" (and
        # `dagster asset materialize`) launches runs in process too, as the named jobs do.
        executor=EXECUTOR,
    )


defs = build_definitions()
