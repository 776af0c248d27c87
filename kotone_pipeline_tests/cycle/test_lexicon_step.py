"""The lexicon_patch step: proposes from the people rows of a cycle's training split, applies nothing."""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.cycle.lexicon_step import step_lexicon_patch
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import lexicon_version
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.local_datasets import LocalDatasetStore
from kotone_pipeline_tests.documents import split_doc
from kotone_pipeline_tests.domain.requests.test_lexicon_patch import _people_rows
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
    assert lexicons.load_patch("c1") == result.patch and Path(result.path).is_file()
    assert lexicons.current()[1] == result.lexicon_version == lexicon_version(default_lexicon())
    assert lexicons.accepted() == []


def _cycle_with_people(tmp_path: Path) -> tuple[CycleArtifacts, LocalDatasetStore, LexiconStore]:
    artifacts, lexicons = CycleArtifacts(tmp_path), LexiconStore(tmp_path)
    datasets = LocalDatasetStore(tmp_path / "datasets")
    splits = make_splits()
    splits["train"] = splits["train"] + _people_rows()
    artifacts.write("c1", split_doc("c1", datasets.publish("c1", splits, {})))
    return artifacts, datasets, lexicons


def test_auto_accept_takes_a_patch_that_lowers_grouped_cv_error_and_moves_the_version(tmp_path: Path) -> None:
    artifacts, datasets, lexicons = _cycle_with_people(tmp_path)
    result = step_lexicon_patch(artifacts, datasets, lexicons, "c1", auto_accept=True)
    assert result.patch.cv_patched_mae < result.patch.cv_base_mae  # type: ignore[operator]
    assert result.accepted == [e.id for e in result.patch.entries] and result.accepted_by == "auto-accept"
    assert "auto-accepted: grouped-CV MAE" in result.why
    assert result.lexicon_version_after == lexicons.current()[1] != result.lexicon_version
    assert {a.accepted_by for a in lexicons.accepted()} == {"auto-accept"}


def test_a_person_accepts_named_entries_from_the_ui(tmp_path: Path) -> None:
    artifacts, datasets, lexicons = _cycle_with_people(tmp_path)
    proposed = step_lexicon_patch(artifacts, datasets, lexicons, "c1").patch.entries
    first = proposed[0].id
    result = step_lexicon_patch(artifacts, datasets, lexicons, "c1", accept=[first])
    assert result.accepted == [first] and result.accepted_by == "ui"
    assert [a.entry.id for a in lexicons.accepted()] == [first]
