"""Asset jobs: the base data, the cycle up to submission, and validation + promotion.

Executor: every job runs its steps **in the run's own process** (``in_process_executor``). A cycle is a
short chain of steps that each depend on the previous one, so the multiprocess default could never run
two at once; it only paid a fresh Python interpreter (and a Dagster + pandas + sklearn import) per step,
which made a ``cycle_job`` launched from the UI take over a minute for ~10 s of work. The executor is
part of the job definition, so the UI, the sensors' run requests and ``kotone demo`` all use the same;
``definitions.py`` makes it the code location's default too, for the implicit asset job an asset page's
"Materialize" launches.
"""

from __future__ import annotations

import dagster as dg

# Job definitions name their executor; launching from the UI, a sensor or the CLI cannot choose another.
EXECUTOR = dg.in_process_executor

# Every run of a job carries the job's tags, however it was launched (UI, sensor, GraphQL, CLI): the queue's
# tag concurrency limits (deploy/dagster.yaml, deploy/helm/values.yaml) count cycle runs by this tag.
RUN_KIND_TAG = "kotone/run_kind"

base_job = dg.define_asset_job(
    "base_job",
    tags={RUN_KIND_TAG: "base"},
    selection=dg.AssetSelection.groups("base"),
    description="catalog -> teacher_pairs -> eval_sets (the unpartitioned base data).",
    executor_def=EXECUTOR,
)
cycle_job = dg.define_asset_job(
    "cycle_job",
    tags={RUN_KIND_TAG: "cycle"},
    selection=dg.AssetSelection.groups("cycle"),
    description=(
        "served_requests -> reviewed_requests -> eval_summary -> hard_dims -> augmented_pairs -> split_dataset "
        "-> training_submission -> failure_playbook, lexicon_patch, for one cycle partition."
    ),
    executor_def=EXECUTOR,
)
validation_job = dg.define_asset_job(
    "validation_job",
    tags={RUN_KIND_TAG: "validation"},
    # workflow_log (unpartitioned) rides along so the report is rebuilt after every promotion decision.
    selection=dg.AssetSelection.assets("validation_snapshot", "promotion_decision", "workflow_log"),
    description=(
        "validation_snapshot -> promotion_decision -> workflow_log; requested by training_jobs_sensor "
        "when all of a cycle's jobs have ended."
    ),
    executor_def=EXECUTOR,
)
report_job = dg.define_asset_job(
    "report_job",
    tags={RUN_KIND_TAG: "report"},
    selection=dg.AssetSelection.assets("workflow_log"),
    description="Rebuilds workflow_log; workflow_log_sensor asks for it after a decision made outside validation_job.",
    executor_def=EXECUTOR,
)

JOBS = (base_job, cycle_job, validation_job, report_job)
