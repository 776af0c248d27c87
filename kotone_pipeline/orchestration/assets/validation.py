"""Partitioned assets after training: the reported models, the validation snapshot, the promotion."""

import dagster as dg

from kotone_pipeline.cycle import promotion, validation
from kotone_pipeline.domain.data.schemas import EvalSummary
from kotone_pipeline.domain.loop.gate import decision_markdown
from kotone_pipeline.orchestration.metadata import (
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

trained_models = dg.AssetSpec(
    key="trained_models",
    partitions_def=cycles,
    group_name="training",
    deps=["training_submission"],
    kinds={"python"},
    description="The cycle's finished training runs, reported by training_jobs_sensor when all jobs end.",
)


@dg.asset(
    partitions_def=cycles,
    group_name="training",
    deps=[trained_models, "split_dataset"],
    kinds={"json"},
    description="Every run's status, timings, cost and metrics on validation and holdout; best run by validation MAE.",
)
def validation_snapshot(
    context: dg.AssetExecutionContext,
    kotone_home: KotoneHomeResource,
    job_backend: JobBackendResource,
    dataset_store: DatasetStoreResource,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    try:
        doc = validation.step_validation_snapshot(
            artifacts, job_backend.get_backend(), dataset_store.get_store(), cycle_id
        )
    except validation.RunsNotFinishedError as exc:
        raise dg.Failure(str(exc)) from exc
    rows = []
    summaries: dict[str, EvalSummary] = {}
    for run in doc.runs:
        by_set = {"validation": run.validation, "holdout": run.holdout, "human": run.human}
        maes = [s.vector_mae if s else "" for s in by_set.values()]
        rows.append([run.run_id, run.stage, *maes, run.running_s or "", run.cost_usd or 0.0, run.url or ""])
        summaries.update({f"{run.run_id} / {name}": s for name, s in by_set.items() if s is not None})
    best = doc.best_run_id
    return dg.MaterializeResult(
        metadata=readable(
            {
                "runs": dg.MetadataValue.md(
                    md_table(
                        ["run", "stage", "validation MAE", "holdout MAE", "human MAE", "running s", "cost USD", "url"],
                        rows,
                    )
                ),
                "best_run": dg.MetadataValue.text(best or "none (no run completed)"),
                **(metrics_metadata(summaries) if summaries else {"metrics": dg.MetadataValue.md("no completed run")}),
                "per_dim_mae": dg.MetadataValue.md(per_dim_table(summaries) if summaries else "-"),
                "completed": dg.MetadataValue.int(doc.completed),
                "failed": dg.MetadataValue.int(doc.failed),
                "total_cost_usd": dg.MetadataValue.float(doc.total_cost_usd),
                "path": path_value(artifacts.location(cycle_id, "validation_snapshot.json")),
            }
        )
    )


class PromotionConfig(dg.Config):
    force_reason: str = ""
    """Promote the best run regardless of the gate; the reason is recorded with the decision."""


@dg.asset(
    partitions_def=cycles,
    group_name="training",
    deps=[validation_snapshot, "eval_summary"],
    kinds={"json"},
    description="The promotion gate's decision with reasons; the only writer of the champion registry.",
)
def promotion_decision(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    kotone_home: KotoneHomeResource,
    champion_registry: ChampionRegistryResource,
    loop_settings: LoopSettings,
    tracker: TrackerResource,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    doc = promotion.step_promotion_decision(
        artifacts,
        champion_registry.get_registry(),
        loop_settings.config(),
        cycle_id,
        force_reason=config.force_reason or None,
        tracker=tracker.get_tracker(),
    )
    decision, tracking = doc.decision, doc.tracking
    delta_rows = [[dim, delta] for dim, delta in decision.per_dim_delta.items()]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "decision": dg.MetadataValue.text("promote" if decision.promote else "keep"),
                "forced": dg.MetadataValue.bool(decision.forced),
                "candidate": dg.MetadataValue.text(decision.candidate_run_id or "none"),
                "reference": dg.MetadataValue.text(f"{decision.reference_kind}: {decision.reference_id}"),
                "candidate_holdout_mae": dg.MetadataValue.float(decision.candidate_holdout_mae)
                if decision.candidate_holdout_mae is not None
                else dg.MetadataValue.text("n/a"),
                "reference_holdout_mae": dg.MetadataValue.float(decision.reference_holdout_mae),
                "candidate_human_mae": dg.MetadataValue.float(round(decision.candidate_human_mae, 4))
                if decision.candidate_human_mae is not None
                else dg.MetadataValue.text("n/a"),
                "per_dim_delta": dg.MetadataValue.md(md_table(["dim", "candidate - reference MAE"], delta_rows)),
                "decision_log": dg.MetadataValue.md(decision_markdown(decision)),
                **tracking_metadata(tracking),
                "path": path_value(artifacts.location(cycle_id, "promotion_decision.json")),
            }
        )
    )
