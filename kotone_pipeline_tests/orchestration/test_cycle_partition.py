"""A run of a cycle asset without a cycle partition fails at its first step with one Kotone line, and a run
with one is tagged with its cycle however it was launched."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.partitions import CYCLE_TAG, cycles


@pytest.fixture
def defs(kotone_home: Path) -> dg.Definitions:
    return build_definitions({"KOTONE_HOME": str(kotone_home), "KOTONE_WANDB_MODE": "disabled"})


def _failures(result: dg.ExecuteInProcessResult) -> tuple[list[str], list[str]]:
    """(steps that started, each failed step's error message)."""
    started = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    failed = [
        e.event_specific_data.error.message  # type: ignore[union-attr]
        for e in result.all_events
        if e.is_step_failure
    ]
    return started, failed


def test_cycle_job_without_a_partition_says_to_add_one_at_its_first_step(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    result = defs.resolve_job_def("cycle_job").execute_in_process(instance=instance, raise_on_error=False)
    started, failed = _failures(result)
    assert not result.success
    assert started == ["served_requests"]  # nothing after the first step runs
    [message] = failed
    assert "cycle_job needs a cycle partition: add it with `kotone cycle new ID`" in message
    assert "DagsterInvariantViolationError" not in message


def test_cycle_job_with_a_partition_never_added_names_it_and_the_fix(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    # What the GraphQL client submits: the partition as a tag, never checked against the cycles.
    result = defs.resolve_job_def("cycle_job").execute_in_process(
        instance=instance, tags={"dagster/partition": "c9"}, raise_on_error=False
    )
    started, failed = _failures(result)
    assert started == ["served_requests"]
    [message] = failed
    assert "cycle_job was given the partition 'c9', which is not a cycle: add it with `kotone cycle new c9`" in message
    assert "Partition range" not in message and "Nonexistent" not in message


def test_a_partition_added_by_hand_that_cannot_be_a_cycle_says_how_to_remove_it(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    instance.add_dynamic_partitions(cycles.name, ["Bad_Cycle"])  # the UI's "add partition" box takes it
    result = defs.resolve_job_def("cycle_job").execute_in_process(
        instance=instance, partition_key="Bad_Cycle", raise_on_error=False
    )
    [message] = _failures(result)[1]
    assert "the partition 'Bad_Cycle', which cannot be a cycle" in message
    assert "remove it with `kotone cycle delete Bad_Cycle`" in message


def test_an_asset_pages_materialize_without_a_partition_names_the_asset(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("eval_summary")], raise_on_error=False
    )
    [message] = _failures(result)[1]
    assert "materializing eval_summary needs a cycle partition: add it with `kotone cycle new ID`" in message


def test_a_run_launched_without_the_cycle_tag_gets_it_when_it_starts(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> None:
    # The UI's Materialize tags its run with the partition only; the cycle's tag is added by the first step.
    instance.add_dynamic_partitions(cycles.name, ["c1"])
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("served_requests")], partition_key="c1"
    )
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[CYCLE_TAG] == "c1"
    assert [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={CYCLE_TAG: "c1"}))] == [result.run_id]
