"""Asset jobs: the base data, the cycle up to submission, and validation + promotion."""

from __future__ import annotations

import dagster as dg

base_job = dg.define_asset_job(
    "base_job", selection=dg.AssetSelection.groups("base"), description="Catalog, teacher pairs, eval sets."
)
cycle_job = dg.define_asset_job(
    "cycle_job",
    selection=dg.AssetSelection.groups("cycle"),
    description="eval_summary -> hard_dims -> augmented_pairs -> split_dataset -> training_submission",
)
validation_job = dg.define_asset_job(
    "validation_job",
    # workflow_log (unpartitioned) rides along so the report is rebuilt after every promotion decision.
    selection=dg.AssetSelection.assets("validation_snapshot", "promotion_decision", "workflow_log"),
    description="Requested by training_jobs_sensor when all of a cycle's jobs have ended.",
)
report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.assets("workflow_log"),
    description="Rebuilds workflow_log; workflow_log_sensor asks for it after a decision made outside validation_job.",
)
