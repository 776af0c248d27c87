"""Unpartitioned assets: the part catalog, the base teacher set, the frozen eval sets."""

import dagster as dg

from kotone_pipeline.cycle.base import TEACHER_PAIRS_FILE, load_base, write_teacher_pairs
from kotone_pipeline.domain.data.dims import SLOTS
from kotone_pipeline.domain.data.paths import data_dir
from kotone_pipeline.domain.data.schemas import LocalHyperParams
from kotone_pipeline.domain.loop.split import split_pairs
from kotone_pipeline.domain.requests.catalog import load_catalog
from kotone_pipeline.orchestration.metadata import dataset_metadata, md_table, path_value, readable
from kotone_pipeline.orchestration.resources import KotoneHomeResource, LoopSettings


@dg.asset(group_name="base", kinds={"json"}, description="The 45 catalog parts (data/catalog.json), validated.")
def catalog() -> dg.MaterializeResult:
    parts = load_catalog()
    rows = [
        [slot, len(parts.by_slot[slot]), ", ".join(p.part_id for p in parts.by_slot[slot][:4]) + " …"] for slot in SLOTS
    ]
    return dg.MaterializeResult(
        metadata=readable(
            {
                "parts": dg.MetadataValue.int(len(parts.parts)),
                "by_slot": dg.MetadataValue.md(md_table(["slot", "parts", "examples"], rows)),
                "path": path_value(data_dir() / "catalog.json"),
            }
        )
    )


@dg.asset(
    group_name="base",
    deps=[catalog],
    kinds={"jsonl"},
    description="Base training pairs from the synthetic teacher, through the quality filter.",
)
def teacher_pairs(kotone_home: KotoneHomeResource, loop_settings: LoopSettings) -> dg.MaterializeResult:
    artifacts = kotone_home.artifacts()
    pairs, report = write_teacher_pairs(artifacts)
    stats = split_pairs(pairs, seed=loop_settings.config().split_seed).stats
    quality = report.as_dict()
    return dg.MaterializeResult(
        metadata=readable(
            {
                **dataset_metadata(len(pairs), stats.data_hash),
                "groups": dg.MetadataValue.int(len({p.group_id for p in pairs})),
                "quality_report": dg.MetadataValue.md(md_table(["reason", "rows"], sorted(quality.items()))),
                "path": path_value(artifacts.base_dir / TEACHER_PAIRS_FILE),
            }
        )
    )


@dg.asset(
    group_name="base",
    deps=[teacher_pairs],
    kinds={"jsonl"},
    description=(
        "Frozen eval sets: probe (mined for hard cases), holdout (promotion gate only) and the hand-written "
        "human set (scored every cycle, guarded by the gate; never trained on, never mined)."
    ),
)
def eval_sets(kotone_home: KotoneHomeResource, loop_settings: LoopSettings) -> dg.MaterializeResult:
    base = load_base(kotone_home.artifacts(), loop_settings.config().split_seed)
    training_groups = {p.group_id for p in base.teacher_pairs}
    overlap = sorted(base.eval_group_ids & training_groups)
    if overlap:
        raise dg.Failure(f"eval groups found in the teacher set: {', '.join(overlap[:10])}")
    rows = [[name, len(pairs), len({p.group_id for p in pairs})] for name, pairs in base.eval_sets()]
    embeddings = {}
    if loop_settings.config().trainer == "local" and LocalHyperParams().use_encoder:
        # Every cycle trains on the teacher pairs and scores the eval sets: embed them once here, so the
        # first cycle's jobs and evaluations find them in the shared cache.
        from kotone_pipeline.domain.model.embedding_cache import (
            prepare_embeddings,  # onnxruntime: not at code-location load
        )

        pairs = [*base.teacher_pairs, *(pair for _, eval_pairs in base.eval_sets() for pair in eval_pairs)]
        prepared = prepare_embeddings((p.source_type, p.text) for p in pairs)
        embeddings["embeddings_prepared"] = dg.MetadataValue.text(
            f"{prepared['texts']:,} request texts, {prepared['embedded']:,} embedded now in "
            f"{prepared['seconds']:.1f} s (the rest were cached)"
        )
    return dg.MaterializeResult(
        metadata=readable(
            {
                **embeddings,
                "sets": dg.MetadataValue.md(md_table(["set", "rows", "groups"], rows)),
                "dagster/row_count": dg.MetadataValue.int(sum(len(pairs) for _, pairs in base.eval_sets())),
                "probe_path": path_value(data_dir() / "eval" / "probe.jsonl"),
                "holdout_path": path_value(data_dir() / "eval" / "holdout.jsonl"),
                "human_path": path_value(data_dir() / "eval" / "human.jsonl"),
            }
        )
    )
