"""Sensor ticks through build_sensor_context against a scripted job backend (a stand-in for HF/local)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.orchestration.resources import JobBackendResource, KotoneHomeResource, LoopSettings
from kotone_pipeline.orchestration.sensors import (
    MISSING_TICKS_BEFORE_GONE,
    nightly_cycle_sensor,
    training_jobs_sensor,
)
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.jobs import JobBackend, JobBackendError, JobSpec, JobState
from kotone_pipeline_tests.documents import submission


class ScriptedBackend(JobBackend):
    """Answers status calls from a dict the test controls; counts calls; can fail like a flaky service."""

    name = "scripted"

    def __init__(self) -> None:
        self.stages: dict[str, str] = {}
        self.fail = False
        self.status_calls = 0

    def submit(self, spec: JobSpec) -> JobState:  # pragma: no cover - not used by sensors
        raise NotImplementedError

    def find(self, cycle_id: str, run_id: str) -> JobState | None:  # pragma: no cover
        return None

    def statuses(self, job_ids: list[str]) -> dict[str, JobState]:
        self.status_calls += 1
        if self.fail:
            raise JobBackendError("503 Service Unavailable", transient=True)
        return {
            j: JobState(
                job_id=j,
                cycle_id=j.split("--")[0],
                run_id=j.split("--")[1],
                backend="scripted",
                stage=self.stages[j],
            )
            for j in job_ids
            if j in self.stages
        }

    def cancel(self, job_id: str) -> None:  # pragma: no cover
        pass

    def logs_tail(self, job_id: str, lines: int = 50) -> str:  # pragma: no cover
        return ""

    def fetch_outputs(self, state: JobState, dest: Path) -> Path:  # pragma: no cover
        return dest


class ScriptedBackendResource(JobBackendResource):
    def get_backend(self) -> JobBackend:
        return BACKEND


BACKEND = ScriptedBackend()


@pytest.fixture
def backend() -> ScriptedBackend:
    BACKEND.__init__()
    return BACKEND


def submit_cycle(home: Path, cycle_id: str, runs: int = 2) -> list[str]:
    arts = CycleArtifacts(home)
    job_ids = [f"{cycle_id}--r{i}" for i in range(runs)]
    arts.write(cycle_id, submission(cycle_id, job_ids))
    return job_ids


def tick(instance: dg.DagsterInstance, home: Path, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "kotone_home": KotoneHomeResource(home=str(home)),
            "job_backend": ScriptedBackendResource(),
        },
    )
    result = training_jobs_sensor(context)
    return result, context.cursor


def test_finished_jobs_report_trained_models_and_request_validation(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = dict.fromkeys(jobs, "COMPLETED")
    result, cursor = tick(instance, kotone_home, None)
    assert isinstance(result, dg.SensorResult)
    [request] = result.run_requests
    assert request.partition_key == "c1"
    assert "c1" in request.run_key and request.run_key.startswith("validate:")
    [event] = result.asset_events
    assert event.asset_key == dg.AssetKey("trained_models") and event.partition == "c1"
    assert event.metadata["completed"].value == 2
    assert json.loads(cursor)["reported"]["c1"] == request.run_key


def test_a_failed_job_still_ends_the_cycle_and_is_reported(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = {jobs[0]: "COMPLETED", jobs[1]: "ERROR"}
    result, _ = tick(instance, kotone_home, None)
    [event] = result.asset_events
    assert event.metadata["failed"].value == 1
    assert len(result.run_requests) == 1


def test_running_and_unknown_stages_wait(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = {jobs[0]: "COMPLETED", jobs[1]: "UPDATING"}  # unknown stage = still running
    result, cursor = tick(instance, kotone_home, None)
    assert isinstance(result, dg.SkipReason)
    assert json.loads(cursor)["open"] == ["c1"]


def test_backend_error_skips_and_keeps_the_cursor(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = dict.fromkeys(jobs, "COMPLETED")
    earlier = json.dumps({"reported": {"old": "validate:old:abc"}, "errors": 0})
    backend.fail = True
    result, cursor = tick(instance, kotone_home, earlier)
    assert isinstance(result, dg.SkipReason) and "unavailable" in result.skip_message
    state = json.loads(cursor)
    assert state["reported"] == {"old": "validate:old:abc"}
    assert state["errors"] == 1
    # The next tick, with the service back, reports the cycle normally.
    backend.fail = False
    result, _ = tick(instance, kotone_home, cursor)
    assert [r.partition_key for r in result.run_requests] == ["c1"]


def test_repeated_ticks_never_request_the_same_validation_twice(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = dict.fromkeys(jobs, "COMPLETED")
    first, cursor = tick(instance, kotone_home, None)
    assert len(first.run_requests) == 1
    for _ in range(3):
        again, cursor = tick(instance, kotone_home, cursor)
        assert isinstance(again, dg.SkipReason)


def test_all_open_cycles_are_polled_in_one_backend_call(instance, kotone_home, backend) -> None:
    stages = {}
    for cycle in ("c1", "c2", "c3"):
        stages.update(dict.fromkeys(submit_cycle(kotone_home, cycle), "COMPLETED"))
    stages["c3--r1"] = "RUNNING"
    backend.stages = stages
    result, _ = tick(instance, kotone_home, None)
    assert backend.status_calls == 1
    assert sorted(r.partition_key for r in result.run_requests) == ["c1", "c2"]


def nightly_tick(instance, home: Path):
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "kotone_home": KotoneHomeResource(home=str(home)),
            "loop_settings": LoopSettings.of(LoopConfig(nightly_cron="* * * * *")),
        },
    )
    return nightly_cycle_sensor(context)


def test_nightly_sensor_opens_one_cycle_per_night(instance, kotone_home) -> None:
    before = f"nightly-{dt.datetime.now(dt.UTC):%Y%m%d}"
    result = nightly_tick(instance, kotone_home)
    after = f"nightly-{dt.datetime.now(dt.UTC):%Y%m%d}"
    expected = result.run_requests[0].partition_key
    assert expected in {before, after}  # the tick may straddle midnight
    [request] = result.run_requests
    assert request.partition_key == expected and request.run_key == expected
    [add] = result.dynamic_partitions_requests
    assert list(add.partition_keys) == [expected]
    instance.add_dynamic_partitions("cycles", [expected])
    again = nightly_tick(instance, kotone_home)
    assert isinstance(again, dg.SkipReason) and "already exists" in again.skip_message


def test_nightly_sensor_waits_while_an_earlier_cycle_has_unfinished_jobs(instance, kotone_home) -> None:
    submit_cycle(kotone_home, "c1")
    result = nightly_tick(instance, kotone_home)
    assert isinstance(result, dg.SkipReason)
    assert "c1" in result.skip_message


def test_a_job_the_backend_no_longer_knows_ends_its_cycle_after_enough_ticks(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = {jobs[0]: "COMPLETED"}  # jobs[1] was deleted on the backend side
    cursor = None
    for _ in range(MISSING_TICKS_BEFORE_GONE):
        result, cursor = tick(instance, kotone_home, cursor)
        assert isinstance(result, dg.SkipReason)  # a missing job may just lag behind: keep waiting
    assert json.loads(cursor)["missing"] == {jobs[1]: MISSING_TICKS_BEFORE_GONE}
    result, cursor = tick(instance, kotone_home, cursor)
    [request] = result.run_requests
    assert request.partition_key == "c1"
    [event] = result.asset_events
    assert event.metadata["failed"].value == 1  # reported as DELETED, not as a success


def test_a_failed_validation_run_is_requested_again_with_a_new_key(instance, kotone_home, backend) -> None:
    jobs = submit_cycle(kotone_home, "c1")
    backend.stages = dict.fromkeys(jobs, "COMPLETED")
    first, cursor = tick(instance, kotone_home, None)
    [request] = first.run_requests

    @dg.op
    def validation_that_fails() -> None:
        raise RuntimeError("transient failure while fetching outputs")

    @dg.job
    def failed_validation() -> None:
        validation_that_fails()

    failed_validation.execute_in_process(instance=instance, raise_on_error=False, tags=dict(request.tags))
    retry, cursor = tick(instance, kotone_home, cursor)
    [again] = retry.run_requests
    assert again.partition_key == "c1"
    assert again.run_key == f"{request.run_key}:retry1"
    assert json.loads(cursor)["reported"]["c1"] == again.run_key
    # While that retry has not failed, nothing more is requested.
    quiet, _ = tick(instance, kotone_home, cursor)
    assert isinstance(quiet, dg.SkipReason)


def _decision_run(instance: dg.DagsterInstance, *selected: str) -> None:
    """A real run materializing promotion_decision (stand-in assets with the real keys) and maybe workflow_log."""

    @dg.asset(name="promotion_decision")
    def decision() -> None:
        return None

    @dg.asset(name="workflow_log", deps=[decision])
    def report() -> None:
        return None

    result = dg.materialize([decision, report], instance=instance, selection=list(selected))
    assert result.success


def test_workflow_log_is_rebuilt_after_a_decision_made_without_it() -> None:
    """A forced promotion from the UI materializes promotion_decision alone: the sensor asks for the report."""
    from kotone_pipeline.orchestration.sensors import workflow_log_sensor

    with dg.instance_for_test() as instance:
        _decision_run(instance, "promotion_decision", "workflow_log")  # like validation_job: rebuilt in-run
        context = dg.build_sensor_context(instance=instance)
        skipped = workflow_log_sensor.evaluate_tick(context)
        assert skipped.run_requests == [] and "rebuilds the workflow log itself" in (skipped.skip_message or "")

        _decision_run(instance, "promotion_decision")
        context = dg.build_sensor_context(instance=instance, cursor=skipped.cursor)
        requested = workflow_log_sensor.evaluate_tick(context)
        (request,) = requested.run_requests
        assert request.run_key.startswith("workflow-log:")
        assert request.job_name in (None, "report_job")

        # The cursor moved past that event: the next tick asks for nothing more.
        again = workflow_log_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=requested.cursor))
        assert again.run_requests == []
