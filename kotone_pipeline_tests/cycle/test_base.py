"""The base data every step of a cycle loads: read once per process, read again when a file changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.cycle.base import TEACHER_PAIRS_FILE, load_base
from kotone_pipeline.domain.data.jsonl import DataFileError, write_jsonl
from kotone_pipeline.services.artifacts import CycleArtifacts


def test_load_base_reads_a_changed_teacher_file_again_and_hands_out_separate_lists(tmp_path: Path) -> None:
    artifacts = CycleArtifacts(tmp_path)
    first = load_base(artifacts, split_seed=7)  # builds and writes the base set
    again = load_base(artifacts, split_seed=7)
    assert again.teacher_pairs == first.teacher_pairs and again.teacher_pairs is not first.teacher_pairs
    again.teacher_pairs.clear()  # a caller's list is its own
    assert len(load_base(artifacts, split_seed=7).teacher_pairs) == len(first.teacher_pairs)

    path = artifacts.base_dir / TEACHER_PAIRS_FILE
    write_jsonl(path, first.teacher_pairs[:10])
    assert load_base(artifacts, split_seed=7).teacher_pairs == first.teacher_pairs[:10]
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(DataFileError, match=f"{TEACHER_PAIRS_FILE}:11"):
        load_base(artifacts, split_seed=7)
