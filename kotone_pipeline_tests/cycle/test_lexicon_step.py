"""The lexicon_patch step: proposes from the people rows of a cycle's training split, applies nothing."""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.cycle.lexicon_step import step_lexicon_patch
from kotone_pipeline.domain.lexicon import default_lexicon
from kotone_pipeline.domain.lexicon_patch import lexicon_version
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.local_datasets import LocalDatasetStore
from kotone_pipeline_tests.documents import split_doc
from kotone_pipeline_tests.domain.test_lexicon_patch import _people_rows
from kotone_pipeline_tests.services.test_local_datasets import make_splits


def test_proposes_from_the_splits_people_rows_and_applies_nothing(tmp_path: Path) -> None:
    artifacts, lexicons = CycleArtifacts(tmp_path), LexiconStore(tmp_path)
    datasets = LocalDatasetStore(tmp_path / "datasets")
    splits = make_splits()
    splits["train"] = splits["train"] + _people_rows()  # 5 teacher rows + 36 people rows
    ref = datasets.publish("c1", splits, {})
    artifacts.write("c1", split_doc("c1", ref))

    result = step_lexicon_patch(artifacts, datasets, lexicons, "c1")

    assert result.patch.rows == 36 and result.patch.rows_by_origin == {"human": 36}
    assert any(e.phrase == "zorbly" for e in result.patch.entries)
    assert lexicons.load_patch("c1") == result.patch and result.path.is_file()
    assert lexicons.current()[1] == result.lexicon_version == lexicon_version(default_lexicon())
    assert lexicons.accepted() == []
