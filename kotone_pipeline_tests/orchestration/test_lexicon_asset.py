"""The lexicon_patch asset: one proposed patch per cycle, shown entry by entry, applied nowhere."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import lexicon_version
from kotone_pipeline.orchestration.assets.lexicon import lexicon_patch
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.local_datasets import LocalDatasetStore
from kotone_pipeline_tests.documents import split_doc
from kotone_pipeline_tests.domain.requests.test_lexicon_patch import _people_rows
from kotone_pipeline_tests.services.test_local_datasets import make_splits


def test_materializes_a_patch_with_its_entries_and_applies_nothing(tmp_path: Path) -> None:
    artifacts = CycleArtifacts(tmp_path)
    splits = make_splits()
    splits["train"] = splits["train"] + _people_rows()
    ref = LocalDatasetStore(artifacts.datasets_dir).publish("c1", splits, {})
    artifacts.write("c1", split_doc("c1", ref))
    defs = build_definitions({"KOTONE_HOME": str(tmp_path), "KOTONE_WANDB_MODE": "disabled"})

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("cycles", ["c1"])
        result = dg.materialize(
            [lexicon_patch], partition_key="c1", instance=instance, resources=dict(defs.resources or {})
        )

    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["people_rows"].value == 36 and meta["proposed_entries"].value >= 2
    assert "zorbly" in meta["entries"].value and "adjust:mood_happy" in meta["entries"].value
    assert meta["cv_patched_mae"].value < meta["cv_base_mae"].value
    assert meta["accept_with"].value == "kotone lexicon accept c1 [--entries ID,...]"
    store = LexiconStore(tmp_path)
    assert store.load_patch("c1").entries and store.accepted() == []
    assert store.current()[1] == lexicon_version(default_lexicon())
