"""Asset checks guarding data (schema, leakage, ratios), submissions and validation."""

import warnings
from collections import Counter
from collections.abc import Iterator

import dagster as dg

from kotone_pipeline.cycle import dataset
from kotone_pipeline.cycle.base import load_base
from kotone_pipeline.cycle.documents import (
    AttemptsDoc,
    PromotionDecisionDoc,
    SplitDatasetDoc,
    TrainingSubmissionDoc,
    ValidationSnapshotDoc,
    current_jobs,
)
from kotone_pipeline.domain.loop.split import check_leakage
from kotone_pipeline.orchestration.assets.cycle import split_dataset, training_submission
from kotone_pipeline.orchestration.assets.validation import promotion_decision, validation_snapshot
from kotone_pipeline.orchestration.partitions import cycles
from kotone_pipeline.orchestration.resources import (
    ChampionRegistryResource,
    DatasetStoreResource,
    JobBackendResource,
    KotoneHomeResource,
    LoopSettings,
)
from kotone_pipeline.services.datasets import EVAL_SPLITS, OPTIONAL_SPLITS, SPLIT_FILES, DatasetRef

# Partitioned asset checks are a preview feature in Dagster 1.13 (pinned); the warning is noise for users.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")

RATIO_TOLERANCE = 0.05
MIN_GROUPS_FOR_RATIO_CHECK = 100


def _schema_result(doc: SplitDatasetDoc, ref: DatasetRef, splits: dict) -> dg.AssetCheckResult:
    # load() already re-validated every row and the content hash of the pinned version.
    counts = {name: len(rows) for name, rows in splits.items()}
    missing = [name for name in SPLIT_FILES if not counts.get(name) and name not in OPTIONAL_SPLITS]
    return dg.AssetCheckResult(
        check_name="split_schema",
        passed=not missing and counts == doc.rows,
        metadata={"rows": counts, "recorded_rows": doc.rows, "empty_or_missing": missing, "version": ref.version},
    )


def _leakage_result(splits: dict, base) -> dg.AssetCheckResult:
    training = {name: rows for name, rows in splits.items() if name not in EVAL_SPLITS}
    problems = check_leakage(training) + dataset.eval_set_leaks(training, base)
    return dg.AssetCheckResult(
        check_name="split_no_leakage", passed=not problems, metadata={"problems": problems[:20], "count": len(problems)}
    )


def _ratios_result(splits: dict) -> dg.AssetCheckResult:
    teacher_groups = {
        name: {p.group_id for p in splits[name] if p.origin == "teacher"} for name in ("train", "validation", "test")
    }
    total = sum(len(g) for g in teacher_groups.values())
    shares = {name: len(g) / total if total else 0.0 for name, g in teacher_groups.items()}
    expected = {"train": 0.8, "validation": 0.1, "test": 0.1}
    off = {n: round(shares[n] - expected[n], 4) for n in expected if abs(shares[n] - expected[n]) > RATIO_TOLERANCE}
    misplaced = [p.id for n in ("validation", "test") for p in splits[n] if p.origin in ("augmented", "replay")]
    return dg.AssetCheckResult(
        check_name="split_ratios",
        passed=not misplaced and (total < MIN_GROUPS_FOR_RATIO_CHECK or not off),
        severity=dg.AssetCheckSeverity.WARN if not misplaced else dg.AssetCheckSeverity.ERROR,
        metadata={
            "group_shares": {k: round(v, 4) for k, v in shares.items()},
            "off_by": off,
            "augmented_outside_train": misplaced[:20],
        },
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "split_schema",
            asset=split_dataset,
            partitions_def=cycles,
            blocking=True,
            description="Published rows parse as Pairs with int 0..10 vectors; counts match what was recorded.",
        ),
        dg.AssetCheckSpec(
            "split_no_leakage",
            asset=split_dataset,
            partitions_def=cycles,
            blocking=True,
            description="No group or text in two splits; no eval group or text in training data.",
        ),
        dg.AssetCheckSpec(
            "split_ratios",
            asset=split_dataset,
            partitions_def=cycles,
            description="Group shares are near 0.8/0.1/0.1 and augmented rows are train-only.",
        ),
    ],
    description="Data checks of the published split (the version is loaded and verified once for all three).",
)
def split_checks(
    context: dg.AssetCheckExecutionContext,
    kotone_home: KotoneHomeResource,
    dataset_store: DatasetStoreResource,
    loop_settings: LoopSettings,
) -> Iterator[dg.AssetCheckResult]:
    artifacts = kotone_home.artifacts()
    doc = artifacts.read(context.partition_key, SplitDatasetDoc)
    ref = doc.dataset
    splits = dataset_store.get_store().load(ref)
    yield _schema_result(doc, ref, splits)
    yield _leakage_result(splits, load_base(artifacts, loop_settings.config().split_seed))
    yield _ratios_result(splits)


@dg.asset_check(
    asset=training_submission,
    partitions_def=cycles,
    blocking=True,
    description="Exactly one job per run, and the backend agrees.",
)
def one_job_per_run(
    context: dg.AssetCheckExecutionContext, kotone_home: KotoneHomeResource, job_backend: JobBackendResource
) -> dg.AssetCheckResult:
    artifacts = kotone_home.artifacts()
    doc = artifacts.read(context.partition_key, TrainingSubmissionDoc)
    jobs = current_jobs(doc, artifacts.read_if_present(context.partition_key, AttemptsDoc))
    backend = job_backend.get_backend()
    run_counts = Counter(r.run_id for r in doc.runs)
    job_counts = Counter(j.job_id for j in jobs.values())
    problems = [f"run {r} listed {n} times" for r, n in run_counts.items() if n > 1]
    problems += [f"job {j} used by {n} runs" for j, n in job_counts.items() if n > 1]
    for run_id, job in jobs.items():
        found = backend.find(context.partition_key, run_id)
        if found is None or found.job_id != job.job_id:
            problems.append(f"run {run_id}: backend has {found.job_id if found else 'no job'}, recorded {job.job_id}")
    return dg.AssetCheckResult(passed=not problems, metadata={"runs": len(doc.runs), "problems": problems})


@dg.asset_check(
    asset=validation_snapshot,
    partitions_def=cycles,
    blocking=True,
    description="All runs terminal; the best run has holdout metrics. Blocks promotion otherwise.",
)
def all_runs_terminal(context: dg.AssetCheckExecutionContext, kotone_home: KotoneHomeResource) -> dg.AssetCheckResult:
    doc = kotone_home.artifacts().read(context.partition_key, ValidationSnapshotDoc)
    open_runs = [r.run_id for r in doc.runs if r.stage not in {"COMPLETED", "ERROR", "CANCELED", "DELETED"}]
    best = doc.best
    best_ok = best is None or best.holdout is not None
    return dg.AssetCheckResult(
        passed=not open_runs and best_ok,
        metadata={
            "open_runs": open_runs,
            "best_run": doc.best_run_id or "none",
            "best_has_holdout": best_ok,
        },
    )


@dg.asset_check(
    asset=promotion_decision,
    partitions_def=cycles,
    description="The registry changed exactly as the gate decided.",
)
def registry_follows_gate(
    context: dg.AssetCheckExecutionContext,
    kotone_home: KotoneHomeResource,
    champion_registry: ChampionRegistryResource,
) -> dg.AssetCheckResult:
    doc = kotone_home.artifacts().read(context.partition_key, PromotionDecisionDoc)
    history_ids = [c.decision_id for c in champion_registry.get_registry().history()]
    promoted = doc.decision.promote
    applied = doc.decision_id in history_ids
    return dg.AssetCheckResult(
        passed=promoted == applied,
        metadata={"decision": "promote" if promoted else "keep", "in_registry_history": applied},
    )


all_checks = [
    split_checks,
    one_job_per_run,
    all_runs_terminal,
    registry_follows_gate,
]
