"""Partitioned assets of the flywheel: what the served champion answered, and what people said of it."""

import dagster as dg

from kotone_pipeline.cycle import flywheel
from kotone_pipeline.orchestration.assets.cycle import earlier_cycles
from kotone_pipeline.orchestration.metadata import md_table, path_value, readable
from kotone_pipeline.orchestration.partitions import cycles, run_cycle
from kotone_pipeline.orchestration.resources import KotoneHomeResource, LoopSettings


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    kinds={"sqlite", "jsonl"},
    description=(
        "Requests the served champion answered since the previous cycle's cut (each counted once), "
        "deduplicated by normalised text, language tagged, e-mails, phone numbers and URLs masked, with the "
        "prediction that was served."
    ),
)
def served_requests(context: dg.AssetExecutionContext, kotone_home: KotoneHomeResource) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    doc = flywheel.step_served_requests(artifacts, kotone_home.request_log(), cycle_id, earlier_cycles(context))
    return dg.MaterializeResult(
        metadata=readable(
            {
                "dagster/row_count": dg.MetadataValue.int(doc.unique),
                "logged": dg.MetadataValue.int(doc.logged),
                "unique": dg.MetadataValue.int(doc.unique),
                "log_cut": dg.MetadataValue.text(f"request seq {doc.after_seq} < seq <= {doc.upto_seq}"),
                "masked": dg.MetadataValue.json(doc.masked),
                "by_lang": dg.MetadataValue.json(doc.by_lang),
                "by_model": dg.MetadataValue.json(doc.by_model),
                "waiting_for_review": dg.MetadataValue.int(doc.waiting_for_review),
                "path": path_value(artifacts.location(cycle_id, f"{flywheel.SERVED_FILE}.jsonl")),
            }
        )
    )


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=[served_requests],
    kinds={"jsonl"},
    description=(
        "People's reviews since the previous cycle's cut, with provenance (reviewer, time, the model and "
        "prediction shown). Each reviewed request goes, by a stable hash of its text, to the training side "
        "(origin reviewed) or to the field set, the eval set of people's requests that no model trains on."
    ),
)
def reviewed_requests(
    context: dg.AssetExecutionContext, kotone_home: KotoneHomeResource, loop_settings: LoopSettings
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    artifacts = kotone_home.artifacts()
    step = flywheel.step_reviewed_requests(
        artifacts, kotone_home.request_log(), loop_settings.config(), cycle_id, earlier_cycles(context)
    )
    doc = step.doc
    rows = [[p.meta["side"], p.text[:80], ", ".join(p.meta["reviewers"])] for p in [*step.training, *step.field][:20]]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "dagster/row_count": dg.MetadataValue.int(doc.to_training + doc.to_field),
                "reviews": dg.MetadataValue.int(doc.reviews),
                "labelled / skipped / junk": dg.MetadataValue.text(f"{doc.labelled} / {doc.skipped} / {doc.junk}"),
                "reviewers": dg.MetadataValue.json(doc.reviewers),
                "to_training": dg.MetadataValue.int(doc.to_training),
                "to_field": dg.MetadataValue.int(doc.to_field),
                "training_side_total": dg.MetadataValue.int(doc.training_total),
                "field_set_total": dg.MetadataValue.int(doc.field_total),
                "routing": dg.MetadataValue.text(
                    f"{doc.field_share:.0%} of requests to the field set by text hash (KOTONE_FIELD_SHARE); "
                    f"reviewed training rows weigh {doc.weight:g} (KOTONE_REVIEWED_WEIGHT)"
                ),
                "reviewed": dg.MetadataValue.md(md_table(["side", "text", "reviewers"], rows) if rows else "none"),
                "path": path_value(artifacts.cycle_location(cycle_id)),
            }
        )
    )
