"""``lexicon_patch``: lexicon changes proposed from people's labels, one patch per cycle (issue 23).

Its own group (not in ``cycle_job``): materialize it for a cycle from the UI after ``split_dataset``.
A patch applies nowhere until accepted: ``kotone lexicon accept CYCLE [--entries ID,...]``.
"""

import dagster as dg

from kotone_pipeline.cycle.lexicon_step import step_lexicon_patch
from kotone_pipeline.orchestration.metadata import md_table, path_value, readable
from kotone_pipeline.orchestration.partitions import cycles
from kotone_pipeline.orchestration.resources import DatasetStoreResource, KotoneHomeResource, resolve_home
from kotone_pipeline.services.lexicon_store import LexiconStore


@dg.asset(
    partitions_def=cycles,
    group_name="lexicon",
    deps=["split_dataset"],
    kinds={"json"},
    description=(
        "Lexicon changes proposed where people's labels (origins human/imported/reviewed in the cycle's "
        "training split) and the lexicon's reading disagree: new phrases and corrected concept values, each "
        "with its evidence rows and grouped-CV gain. Applied only when accepted (kotone lexicon accept)."
    ),
)
def lexicon_patch(
    context: dg.AssetExecutionContext, kotone_home: KotoneHomeResource, dataset_store: DatasetStoreResource
) -> dg.MaterializeResult:
    result = step_lexicon_patch(
        kotone_home.artifacts(),
        dataset_store.get_store(),
        LexiconStore(resolve_home(kotone_home.home)),
        context.partition_key,
    )
    patch = result.patch
    rows = [
        [
            e.id,
            e.phrase or "",
            ", ".join(f"{d} {v}" for d, v in e.dims.items()),
            ", ".join(f"{d} {v}" for d, v in e.previous.items()),
            f"{len(e.evidence)}: " + ", ".join(e.evidence[:5]) + (" ..." if len(e.evidence) > 5 else ""),
            e.cv_gain,
        ]
        for e in patch.entries
    ]
    headers = ["entry", "phrase", "values (0..100)", "was", "evidence rows", "CV gain"]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "entries": dg.MetadataValue.md(md_table(headers, rows) if rows else "(no entry proposed)"),
                "proposed_entries": dg.MetadataValue.int(len(patch.entries)),
                "people_rows": dg.MetadataValue.int(patch.rows),
                "people_groups": dg.MetadataValue.int(patch.groups),
                "cv_base_mae": dg.MetadataValue.float(patch.cv_base_mae or 0.0),
                "cv_patched_mae": dg.MetadataValue.float(patch.cv_patched_mae or 0.0),
                "lexicon_version": dg.MetadataValue.text(result.lexicon_version),
                "patch": path_value(str(result.path)),
                "accept_with": dg.MetadataValue.text(
                    f"kotone lexicon accept {context.partition_key} [--entries ID,...]"
                ),
            }
        )
    )
