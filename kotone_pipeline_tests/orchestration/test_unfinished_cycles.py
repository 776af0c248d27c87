"""`kotone demo` finishes a cycle that stopped before its decision before it opens a new one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.runner import CycleRunner
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline_tests.documents import write_raw


def test_started_cycles_without_a_decision_are_unfinished(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    runner = CycleRunner(build_definitions({"KOTONE_HOME": str(tmp_path)}), instance)
    for cycle_id in ("c1", "c2", "c3", "c4"):
        runner.new_cycle(cycle_id)
    arts = CycleArtifacts(tmp_path)
    write_raw(arts, "c1", "training_submission", {})  # died waiting for its jobs
    write_raw(arts, "c2", "training_submission", {})
    write_raw(arts, "c2", "promotion_decision", {})  # finished
    write_raw(arts, "c3", "eval_summary", {})  # failed early
    # c4 was only created (`kotone cycle new c4`): nothing started, nothing to finish

    assert runner.unfinished_cycles() == ["c1", "c3"]
