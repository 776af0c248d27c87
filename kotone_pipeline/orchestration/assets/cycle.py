"""Partitioned assets of one cycle, up to the training submission."""

from typing import Any

import dagster as dg

from kotone_pipeline.cycle import dataset, evaluation, submission
from kotone_pipeline.cycle.tracking import write_failure_playbook
from kotone_pipeline.domain.model.encoder import EncoderError
from kotone_pipeline.orchestration.metadata import (
    as_of,
    dataset_metadata,
    human_metadata,
    md_table,
    metrics_metadata,
    path_value,
    per_dim_table,
    readable,
    tracking_metadata,
)
from kotone_pipeline.orchestration.partitions import cycles, run_cycle
from kotone_pipeline.orchestration.resources import (
    ChampionRegistryResource,
    DatasetStoreResource,
    JobBackendResource,
    KotoneHomeResource,
    LoopSettings,
    TrackerResource,
)
from kotone_pipeline.services.jobs import JobBackendError
from kotone_pipeline.services.tracker import TrackerUnavailableError
from kotone_pipeline.services.wandb_failures import FailureTableNotFoundError, fetch_failures

SUBMISSION_RETRY_WAIT_S = 75


def earlier_cycles(context: dg.AssetExecutionContext) -> list[str]:
    """Cycles created before this one (dynamic partitions keep insertion order)."""
    keys = list(context.instance.get_dynamic_partitions(cycles.name))
    key = context.partition_key
    return keys[: keys.index(key)] if key in keys else keys


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=["eval_sets", "teacher_pairs", "reviewed_requests"],
    kinds={"json"},
    description=(
        "The champion and both baselines on the frozen probe and holdout sets, the hand-written human set and "
        "the field set of reviewed requests people sent (requests people wrote: the measure that matters)."
    ),
)
def eval_summary(
    context: dg.AssetExecutionContext,
    kotone_home: KotoneHomeResource,
    champion_registry: ChampionRegistryResource,
    loop_settings: LoopSettings,
    tracker: TrackerResource,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    result = evaluation.step_eval_summary(
        artifacts,
        champion_registry.get_registry(),
        loop_settings.config(),
        cycle_id,
        tracker=tracker.get_tracker(),
        earlier_cycles=earlier_cycles(context),
    )
    flat = {f"{name} / {ds}": s for name, by_ds in result.summaries.items() for ds, s in by_ds.items()}
    holdout = {name: by_ds["holdout"] for name, by_ds in result.summaries.items()}
    current_holdout = result.summaries[result.current_model]["holdout"]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "current_model": dg.MetadataValue.text(result.current_model),
                "champion": dg.MetadataValue.text(result.champion.model_id if result.champion else "none (baselines)"),
                "holdout_vector_mae": dg.MetadataValue.float(current_holdout.vector_mae),
                "probe_vector_mae": dg.MetadataValue.float(result.summaries[result.current_model]["probe"].vector_mae),
                **human_metadata(result.summaries),
                **metrics_metadata(flat),
                "per_dim_mae_holdout": dg.MetadataValue.md(per_dim_table(holdout)),
                "eval_id": dg.MetadataValue.text(result.eval_id),
                **tracking_metadata(result.tracking),
                "path": path_value(artifacts.location(cycle_id, "eval_summary.json")),
            }
        )
    )


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=[eval_summary],
    kinds={"json"},
    description=(
        "The champion's hardest dims (top-k by MAE unless forced): on the reviewed requests people sent once "
        "there are some, else on the probe set; each focus dim says which rows picked it."
    ),
)
def hard_dims(
    context: dg.AssetExecutionContext,
    kotone_home: KotoneHomeResource,
    loop_settings: LoopSettings,
    tracker: TrackerResource,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    config = loop_settings.config()
    failures, fetch_meta = None, {}
    if config.hard_dims_source == "wandb_failures":
        try:
            fetch = fetch_failures(
                tracker.project, artifacts.home, allow_stale=config.allow_stale, timeout_s=config.wandb_timeout_s
            )
        except (TrackerUnavailableError, FailureTableNotFoundError) as exc:
            raise dg.Failure(f"hard dims from W&B failed: {exc}") from exc
        failures, fetch_meta = fetch.rows, fetch.as_metadata()
    report = evaluation.step_hard_dims(artifacts, config, cycle_id, failures=failures, extra=fetch_meta)
    by_dim = sorted(report.by_dim.items(), key=lambda kv: -kv[1])
    failures = [[f.source_type, f.text[:80], f.row_mae] for f in report.top_failures[:10]]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "focus": dg.MetadataValue.json(report.focus),
                "source": dg.MetadataValue.text(report.source),
                "focus_sources": dg.MetadataValue.json(report.focus_sources),
                "by_dim": dg.MetadataValue.md(
                    md_table(
                        ["dim", f"MAE ({report.source})", "probe MAE", "focus"],
                        [[d, v, report.probe_by_dim.get(d, v), "yes" if d in report.focus else ""] for d, v in by_dim],
                    )
                ),
                "top_failures": dg.MetadataValue.md(md_table(["source_type", "text", "row MAE"], failures)),
                **{k: dg.MetadataValue.text(str(v)) for k, v in fetch_meta.items()},
                "path": path_value(artifacts.location(cycle_id, "hard_dims.json")),
            }
        )
    )


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=[hard_dims],
    kinds={"jsonl"},
    description="Targeted training pairs: failing probe vectors pushed along the hard dims, with new text.",
)
def augmented_pairs(
    context: dg.AssetExecutionContext, kotone_home: KotoneHomeResource, loop_settings: LoopSettings
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    result = dataset.step_augmented_pairs(artifacts, loop_settings.config(), cycle_id, earlier_cycles(context))
    by_origin = {}
    for pair in result.pairs:
        by_origin[pair.origin] = by_origin.get(pair.origin, 0) + 1
    return dg.MaterializeResult(
        metadata=readable(
            {
                "dagster/row_count": dg.MetadataValue.int(len(result.pairs)),
                "dagster/column_schema": dataset_metadata(0, "")["dagster/column_schema"],
                "by_origin": dg.MetadataValue.json(by_origin),
                "counts": dg.MetadataValue.json(result.counts),
                "path": path_value(artifacts.location(cycle_id, "augmented_pairs.jsonl")),
            }
        )
    )


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=[augmented_pairs, "teacher_pairs", "eval_sets"],
    kinds={"jsonl"},
    description=(
        "Leak-free group-aware train/validation/test split, published as an immutable version and logged as a "
        "W&B dataset artifact (alias `cycle-ID`, ID being the cycle's partition key) that the training runs use."
    ),
)
def split_dataset(
    context: dg.AssetExecutionContext,
    kotone_home: KotoneHomeResource,
    dataset_store: DatasetStoreResource,
    loop_settings: LoopSettings,
    tracker: TrackerResource,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    result = dataset.step_split_dataset(
        artifacts,
        dataset_store.get_store(),
        loop_settings.config(),
        cycle_id,
        earlier_cycles(context),
        tracker=tracker.get_tracker(),
    )
    counts = result.stats["counts"]
    count_rows = [
        [split, source_type, origin, n]
        for split, by_type in counts.items()
        for source_type, by_origin in by_type.items()
        for origin, n in by_origin.items()
    ]
    dim_rows = [
        [split, dim, s["mean"], s["min"], s["max"]]
        for split, by_dim in result.stats["dim_stats"].items()
        for dim, s in by_dim.items()
    ]
    return dg.MaterializeResult(
        metadata=readable(
            {
                **dataset_metadata(sum(result.rows.values()), result.dataset.data_hash),
                "rows_by_split": dg.MetadataValue.json(result.rows),
                "counts": dg.MetadataValue.md(md_table(["split", "source_type", "origin", "rows"], count_rows)),
                "dim_stats": dg.MetadataValue.md(md_table(["split", "dim", "mean", "min", "max"], dim_rows)),
                "dataset_version": dg.MetadataValue.text(result.dataset.version),
                "dataset_uri": dg.MetadataValue.url(result.dataset.uri)
                if result.dataset.uri.startswith("http")
                else path_value(result.dataset.uri),
                **tracking_metadata(result.tracking),
            }
        )
    )


def _embeddings_metadata(embeddings: dict[str, Any] | None) -> dict[str, Any]:
    if not embeddings:
        return {}
    text = (
        f"{embeddings['texts']:,} request texts in the split, {embeddings['embedded']:,} embedded now "
        f"in {embeddings['seconds']:.1f} s (the rest were cached); the local jobs read them from the cache"
    )
    return {"embeddings_prepared": dg.MetadataValue.text(text)}


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=[split_dataset, eval_summary, hard_dims],
    kinds={"python"},
    pool="training_submission",
    description="One training job per campaign run (never two per run), with next hyper-parameters and reasons.",
)
def training_submission(
    context: dg.AssetExecutionContext,
    kotone_home: KotoneHomeResource,
    job_backend: JobBackendResource,
    loop_settings: LoopSettings,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    try:
        doc = submission.step_training_submission(
            artifacts, job_backend.get_backend(), loop_settings.config(), cycle_id
        )
    except JobBackendError as exc:
        if exc.transient:
            # Safe to retry: submission adopts every job that already exists for (cycle, run). The wait
            # outlasts HF's create-settle window, so a job whose create answered 5xx is listed by then.
            raise dg.RetryRequested(max_retries=3, seconds_to_wait=SUBMISSION_RETRY_WAIT_S) from exc
        raise dg.Failure(f"job submission refused: {exc}") from exc
    except (ValueError, EncoderError) as exc:  # a changed split, a wrong store, an encoder that cannot load
        raise dg.Failure(str(exc)) from exc
    decision = doc.hparams_decision
    runs = [[r.run_id, r.job_id, r.stage, "adopted" if r.adopted else "new", r.url or ""] for r in doc.runs]
    stages_as_of = as_of()
    hparams = [[r.run_id, ", ".join(f"{k}={v}" for k, v in sorted(r.hparams.items()))] for r in doc.runs]
    return dg.MaterializeResult(
        metadata=readable(
            {
                # A stage is a snapshot of a job that moves on: say when it was taken (trained_models has the end).
                "runs": dg.MetadataValue.md(
                    md_table(["run", "job id", f"stage as of {stages_as_of}", "submission", "url"], runs)
                ),
                "stages_as_of": dg.MetadataValue.text(stages_as_of),
                "hparams": dg.MetadataValue.md(md_table(["run", "hyper-parameters"], hparams)),
                "hparams_patch": dg.MetadataValue.json(decision.patch),
                "hparams_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons) or "-"),
                "job_ids": dg.MetadataValue.json([r.job_id for r in doc.runs]),
                "backend": dg.MetadataValue.text(doc.backend),
                "new_jobs": dg.MetadataValue.int(sum(not r.adopted for r in doc.runs)),
                **_embeddings_metadata(doc.embeddings),
            }
        )
    )


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=[training_submission, augmented_pairs, hard_dims, eval_summary],
    kinds={"markdown"},
    description="Where the model fails (dims, source types, parts, directions), examples, and what the loop does next.",
)
def failure_playbook(context: dg.AssetExecutionContext, kotone_home: KotoneHomeResource) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    path, playbook = write_failure_playbook(kotone_home.artifacts(), cycle_id)
    return dg.MaterializeResult(
        metadata=readable(
            {
                "playbook": dg.MetadataValue.md(playbook.markdown),
                "worst_dims": dg.MetadataValue.json([row.dim for row in playbook.worst_dims[:3]]),
                "path": path_value(path),
            }
        )
    )
