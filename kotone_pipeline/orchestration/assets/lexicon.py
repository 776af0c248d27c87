"""``lexicon_patch``: lexicon changes proposed from people's labels, one patch per cycle (issue 23).

Part of ``cycle_job`` (after ``split_dataset``). A patch applies nowhere until accepted: ``kotone lexicon
accept CYCLE [--entries ID,...]``, the asset's ``accept`` config from the UI, or ``KOTONE_LEXICON_AUTO_ACCEPT``
when the patch lowers grouped-CV error on people's rows. Accepted entries write and label the next cycle's
new requests.
"""

import dagster as dg

from kotone_pipeline.cycle.lexicon_step import step_lexicon_patch
from kotone_pipeline.orchestration.metadata import md_table, path_value, readable
from kotone_pipeline.orchestration.partitions import cycles, run_cycle
from kotone_pipeline.orchestration.resources import (
    DatasetStoreResource,
    KotoneHomeResource,
    LoopSettings,
)
from kotone_pipeline.services.lexicon_store import LexiconStore


class LexiconPatchConfig(dg.Config):
    accept: str = ""
    """Entry ids to accept (comma-separated), or "all"; empty proposes only."""


@dg.asset(
    partitions_def=cycles,
    group_name="cycle",
    deps=["split_dataset"],
    kinds={"json"},
    description=(
        "Lexicon changes proposed where people's labels (origins human/imported/reviewed in the cycle's "
        "training split) and the lexicon's reading disagree: new phrases and corrected concept values, each "
        "with its evidence rows and grouped-CV gain. Applied only when accepted (kotone lexicon accept)."
    ),
)
def lexicon_patch(
    context: dg.AssetExecutionContext,
    config: LexiconPatchConfig,
    kotone_home: KotoneHomeResource,
    dataset_store: DatasetStoreResource,
    loop_settings: LoopSettings,
) -> dg.MaterializeResult:
    cycle_id = run_cycle(context)
    accept = [e.strip() for e in config.accept.split(",") if e.strip()]
    try:
        result = step_lexicon_patch(
            kotone_home.artifacts(),
            dataset_store.get_store(),
            LexiconStore.beside(kotone_home.artifacts().store),
            cycle_id,
            auto_accept=loop_settings.config().lexicon_auto_accept,
            accept=accept,
        )
    except ValueError as exc:  # an unknown entry id, or entries that would break the lexicon
        raise dg.Failure(str(exc)) from exc
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
                "accepted": dg.MetadataValue.json(result.accepted),
                "acceptance": dg.MetadataValue.text(result.why),
                "lexicon_version_next_cycle": dg.MetadataValue.text(result.lexicon_version_after),
                "accept_with": dg.MetadataValue.text(f"kotone lexicon accept {cycle_id} [--entries ID,...]"),
            }
        )
    )
