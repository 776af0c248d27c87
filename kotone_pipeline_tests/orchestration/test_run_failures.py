"""A run that failed without a failed step (its worker was killed) is explained from its own event log."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.driver import DagsterDriver
from kotone_pipeline.orchestration.run_failures import explain, failure_cause, run_events
from kotone_pipeline.orchestration.runner import CycleFailedError, CycleRunner

# What the code server records when a run's process dies (dagster._grpc.server._check_for_orphaned_runs).
KILLED = "Run execution process for {run} was terminated by signal 9 (SIGKILL)."


@dg.op
def noop() -> None:
    pass


@dg.job
def tiny_job() -> None:
    noop()


def _killed_run(instance: dg.DagsterInstance) -> str:
    """A run whose worker died, recorded as a code server records it: the engine event, then Dagster's generic
    failure."""
    run = instance.create_run_for_job(tiny_job, tags={"dagster/partition": "c1"})
    instance.report_engine_event(KILLED.format(run=run.run_id), run)
    instance.report_run_failed(run)
    return run.run_id


def test_a_killed_workers_cause_is_the_engine_event_before_the_generic_failure(
    instance: dg.DagsterInstance,
) -> None:
    run_id = _killed_run(instance)
    events = run_events(instance, run_id)
    assert any("outside the execution context" in (e.message or "") for e in events)  # Dagster's own words
    assert failure_cause(events) == KILLED.format(run=run_id)
    assert explain(events) == KILLED.format(run=run_id)


def test_a_failure_with_its_own_message_is_that_message(instance: dg.DagsterInstance) -> None:
    run = instance.create_run_for_job(tiny_job)
    instance.report_engine_event("Started process for run (pid: 1).", run)
    monitoring = "Detected run worker status FAILED. Marking run as failed."
    instance.report_run_failed(run, monitoring)
    assert failure_cause(run_events(instance, run.run_id)) == monitoring


def test_the_cli_line_for_a_killed_run_names_the_signal(instance: dg.DagsterInstance, kotone_home: Path) -> None:
    # The path `kotone demo` takes: a launched run waited for, then explained (no workspace is loaded:
    # waiting reads the instance only).
    run_id = _killed_run(instance)
    driver = DagsterDriver(instance, kotone_home / "dagster", log_file=kotone_home / "runs.log")
    runner = CycleRunner(build_definitions({"KOTONE_HOME": str(kotone_home)}), instance, driver=driver)
    with pytest.raises(CycleFailedError) as failed:
        runner._wait_launched(run_id, "c1")
    line = str(failed.value)
    assert f"tiny_job run {run_id[:8]} ended FAILURE for c1: " in line
    assert "terminated by signal 9 (SIGKILL)" in line and "see the run" not in line


def test_failed_steps_come_first_and_a_failure_loses_its_class_path(instance: dg.DagsterInstance) -> None:
    @dg.op
    def refuses() -> None:
        raise dg.Failure("cycle_job needs a cycle partition: add it with `kotone cycle new ID`")

    @dg.job
    def refusing_job() -> None:
        refuses()

    result = refusing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert explain(result.all_events) == "refuses: cycle_job needs a cycle partition: add it with `kotone cycle new ID`"
