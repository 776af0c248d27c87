"""The deployment as separate processes: PostgreSQL, ``dagster code-server start``, ``dagster-daemon run`` and
the webserver on the instance from deploy/dagster.yaml, with runs submitted through Dagster's public GraphQL
client, as an operator's scripts or the UI submit them.

The cycle-run limit is lowered to 2 here so that four cycles submitted at once make it bind; everything else
is deploy/dagster.yaml as shipped. The tests share one deployment and run in order (module scope): four
cycles at once, a daemon killed mid-cycle, a run worker killed mid-run, the nightly sensor switched on.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from kotone_pipeline.compat.dagster import get_latest_completed_cron_tick
from kotone_pipeline.cycle.documents import PromotionDecisionDoc, TrainingSubmissionDoc
from kotone_pipeline.orchestration.jobs import RUN_KIND_TAG
from kotone_pipeline.orchestration.partitions import cycles
from kotone_pipeline.orchestration.sensors import nightly_cycle_id
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline_tests import pg
from kotone_pipeline_tests.deploy.topology import LOCATION, REPOSITORY, TERMINAL, Deployment, deployment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(pg.missing_reason() is not None, reason=pg.missing_reason() or ""),
]

CYCLE_LIMIT = 2
CAMPAIGN_SIZE = 1
ENV = {"KOTONE_CAMPAIGN_SIZE": str(CAMPAIGN_SIZE), "KOTONE_WANDB_MODE": "disabled"}
FOUR = [f"q{i}" for i in range(1, 5)]
RECOVERY_TARGET_S = 60.0
UNFINISHED = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
}


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # Run monitoring every 5 s and a dead run's slot freed 5 s after it ended (60 s in deploy/): the kill test
    # waits for exactly that rule, in seconds rather than minutes.
    with deployment(tmp_path_factory.mktemp("deploy"), ENV, cycle_limit=CYCLE_LIMIT, monitoring_s=5) as running:
        yield running


@pytest.fixture(scope="module")
def client(dep: Deployment) -> DagsterGraphQLClient:
    return DagsterGraphQLClient("127.0.0.1", port_number=dep.web_port)


def submit_cycle(client: DagsterGraphQLClient, cycle_id: str) -> str:
    return client.submit_job_execution(
        "cycle_job",
        repository_location_name=LOCATION,
        repository_name=REPOSITORY,
        tags={"dagster/partition": cycle_id, "kotone/cycle": cycle_id},
    )


def wait_decisions(dep: Deployment, cycle_ids: list[str], timeout_s: float = 900, killed: frozenset[str] = frozenset()):
    """Until every cycle has its promotion decision (the validation run the daemon's sensor asked for) and
    none of their runs is still going; a failed run of these cycles fails the wait, except those ``killed``."""
    artifacts = CycleArtifacts(dep.home)
    deadline = time.monotonic() + timeout_s
    failures = dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], tags={"dagster/partition": cycle_ids})
    unfinished = dg.RunsFilter(statuses=list(UNFINISHED), tags={"dagster/partition": cycle_ids})
    with dep.instance() as instance:
        # The decision is written mid-run (validation_job goes on to the workflow log): wait for the runs too.
        while not all(artifacts.has(c, PromotionDecisionDoc) for c in cycle_ids) or instance.get_run_records(
            unfinished
        ):
            failed = [r for r in instance.get_run_records(failures) if r.dagster_run.run_id not in killed]
            assert not failed, [r.dagster_run.job_name for r in failed] + [dep.logs()]
            assert time.monotonic() < deadline, f"no decision in {timeout_s:.0f}s\n{dep.logs()}"
            time.sleep(1)


def step_spans(instance: dg.DagsterInstance, run_id: str, step_key: str) -> list[tuple[float, float]]:
    """(start, end) of each execution of a step in a run, from its STEP_START and STEP_SUCCESS/FAILURE events."""
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    spans, started = [], None
    for record in instance.get_records_for_run(run_id, of_type=kinds, limit=1000).records:
        entry = record.event_log_entry
        if entry.step_key != step_key or entry.dagster_event is None:
            continue
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            started = entry.timestamp
        elif started is not None:
            spans.append((started, entry.timestamp))
            started = None
    return spans


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    most = current = 0
    for _, delta in edges:
        current += delta
        most = max(most, current)
    return most


@pytest.fixture(scope="module")
def four_cycles(dep: Deployment, client: DagsterGraphQLClient) -> dict[str, str]:
    """Base data first (one run), then four cycles submitted at once; returns cycle id -> cycle run id."""
    (base,) = dep.wait_runs(
        [client.submit_job_execution("base_job", repository_location_name=LOCATION, repository_name=REPOSITORY)]
    )
    assert base.status == dg.DagsterRunStatus.SUCCESS, dep.logs()
    with dep.instance() as instance:
        instance.add_dynamic_partitions(cycles.name, FOUR)  # what `kotone cycle new` does
    run_ids = {cycle_id: submit_cycle(client, cycle_id) for cycle_id in FOUR}
    wait_decisions(dep, FOUR)
    return run_ids


def test_four_cycles_submitted_at_once_all_end_with_a_decision(dep, four_cycles) -> None:
    artifacts = CycleArtifacts(dep.home)
    with dep.instance() as instance:
        for cycle_id, run_id in four_cycles.items():
            run = instance.get_run_by_id(run_id)
            assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
            assert run.tags[RUN_KIND_TAG] == "cycle"  # the job's tag, on a run submitted through GraphQL
            decision = artifacts.read(cycle_id, PromotionDecisionDoc)
            assert decision.decision.candidate_holdout_mae is not None  # the candidate trained and was scored
            validations = instance.get_run_records(
                dg.RunsFilter(job_name="validation_job", tags={"dagster/partition": cycle_id})
            )
            assert [r.dagster_run.status for r in validations] == [dg.DagsterRunStatus.SUCCESS]
            assert validations[0].dagster_run.tags.get("dagster/sensor_name") == "training_jobs_sensor"


def test_training_submission_never_ran_twice_at_once(dep, four_cycles) -> None:
    with dep.instance() as instance:
        spans = [
            span for run_id in four_cycles.values() for span in step_spans(instance, run_id, "training_submission")
        ]
    assert len(spans) == len(FOUR)  # once per cycle, none retried
    ordered = sorted(spans)
    overlaps = [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b[0] < a[1]]
    assert overlaps == [], "two training_submission steps ran at the same time"


def test_the_queue_held_the_cycle_run_limit(dep, four_cycles) -> None:
    with dep.instance() as instance:
        records = instance.get_run_records(dg.RunsFilter(run_ids=list(four_cycles.values())))
    spans = [(r.start_time, r.end_time) for r in records]
    assert all(s is not None and e is not None for s, e in spans)
    assert max_overlap(spans) == CYCLE_LIMIT  # the limit bound (4 submitted at once) and held
    # The runs beyond the limit waited in the queue: submitted with the others, started once one had ended.
    first_end = min(e for _, e in spans)
    late = [r for r in records if r.start_time >= first_end - 0.5]
    assert len(late) >= len(FOUR) - CYCLE_LIMIT


def test_no_job_was_submitted_twice(dep, four_cycles) -> None:
    artifacts = CycleArtifacts(dep.home)
    for cycle_id in FOUR:
        jobs = [p for p in artifacts.jobs_dir.iterdir() if p.is_dir() and p.name.startswith(f"{cycle_id}.")]
        assert len(jobs) == CAMPAIGN_SIZE, jobs
        submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
        assert [r.adopted for r in submission.runs] == [False] * CAMPAIGN_SIZE


def _sensor_ticks(dep: Deployment, sensor: str) -> list[dict]:
    query = """
    query($selector: SensorSelector!) {
      sensorOrError(sensorSelector: $selector) {
        __typename
        ... on Sensor { sensorState { status ticks(limit: 50) { timestamp status } } }
      }
    }"""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor}
    answer = dep.graphql(query, {"selector": selector})["data"]["sensorOrError"]
    assert answer["__typename"] == "Sensor", answer
    return answer["sensorState"]["ticks"]


def test_a_daemon_killed_mid_cycle_recovers_and_the_cycle_ends_with_its_decision(dep, client, four_cycles) -> None:
    cycle_id = "k1"
    artifacts = CycleArtifacts(dep.home)
    with dep.instance() as instance:
        instance.add_dynamic_partitions(cycles.name, [cycle_id])
    run_id = submit_cycle(client, cycle_id)
    # Mid-cycle: the run was dequeued and its training job submitted, the sensor has not validated it yet.
    deadline = time.monotonic() + 300
    while not artifacts.has(cycle_id, TrainingSubmissionDoc):
        assert time.monotonic() < deadline, dep.logs()
        time.sleep(0.2)
    assert not artifacts.has(cycle_id, PromotionDecisionDoc)
    dep.kill_daemon()
    time.sleep(2)
    restarted = time.time()
    dep.start("daemon")
    deadline = time.monotonic() + 120
    while not [t for t in _sensor_ticks(dep, "training_jobs_sensor") if float(t["timestamp"]) > restarted]:
        assert time.monotonic() < deadline, dep.logs()
        time.sleep(0.5)
    first_tick = min(
        float(t["timestamp"]) for t in _sensor_ticks(dep, "training_jobs_sensor") if float(t["timestamp"]) > restarted
    )
    assert first_tick - restarted <= RECOVERY_TARGET_S
    wait_decisions(dep, [cycle_id])
    with dep.instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        validations = instance.get_run_records(
            dg.RunsFilter(job_name="validation_job", tags={"dagster/partition": cycle_id})
        )
    assert len(validations) == 1  # the restarted sensor resumed from its cursor: one validation request
    jobs = [p for p in artifacts.jobs_dir.iterdir() if p.is_dir() and p.name.startswith(f"{cycle_id}.")]
    assert len(jobs) == CAMPAIGN_SIZE


REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's process id: RUN_START is reported by the run worker itself."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    event = records[0].event_log_entry.dagster_event if records else None
    return event.pid if event is not None else None


def _step_started(instance: dg.DagsterInstance, run_id: str, step_key: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START, limit=100).records
    return any(r.event_log_entry.step_key == step_key for r in records)


def test_a_run_worker_killed_mid_run_fails_with_the_reason_and_a_reexecution_completes_it(
    dep, client, four_cycles
) -> None:
    cycle_id = "w1"
    artifacts = CycleArtifacts(dep.home)
    with dep.instance() as instance:
        instance.add_dynamic_partitions(cycles.name, [cycle_id])
    run_id = submit_cycle(client, cycle_id)
    # Mid-run, inside training_submission: the run holds the pool's only slot when it dies.
    deadline = time.monotonic() + 300
    with dep.instance() as instance:
        while not _step_started(instance, run_id, "training_submission"):
            assert time.monotonic() < deadline, dep.logs()
            time.sleep(0.05)
        pid = _run_worker_pid(instance, run_id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (run := instance.get_run_by_id(run_id)) is not None and run.status not in TERMINAL:
            assert time.monotonic() < deadline, dep.logs()
            time.sleep(0.2)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
        messages = [entry.message for entry in instance.all_logs(run_id)]
        assert any("terminated by signal 9 (SIGKILL)" in m for m in messages), messages[-5:]
        assert step_spans(instance, run_id, "training_submission") == []  # died inside the step
    answer = dep.graphql(REEXECUTE, {"params": {"parentRunId": run_id, "strategy": "FROM_FAILURE"}})
    relaunch = answer["data"]["launchRunReexecution"]
    assert relaunch["__typename"] == "LaunchRunSuccess", relaunch
    # It waits in the queue until run monitoring frees the dead run's slot (free_slots_after_run_end_seconds);
    # without that setting it waits for ever, "blocked by global concurrency limits".
    (rerun,) = dep.wait_runs([relaunch["run"]["runId"]], timeout_s=600)
    assert rerun.status == dg.DagsterRunStatus.SUCCESS, dep.logs()
    wait_decisions(dep, [cycle_id], killed=frozenset({run_id}))
    with dep.instance() as instance:
        assert len(step_spans(instance, rerun.run_id, "training_submission")) == 1
    # One job per run, whether or not the killed step had submitted it (the re-run adopts an existing job).
    jobs = [p for p in artifacts.jobs_dir.iterdir() if p.is_dir() and p.name.startswith(f"{cycle_id}.")]
    assert len(jobs) == CAMPAIGN_SIZE


def test_the_nightly_sensor_switched_on_through_graphql_opens_its_cycle(dep, four_cycles) -> None:
    mutation = """
    mutation($selector: SensorSelector!) {
      startSensor(sensorSelector: $selector) { __typename ... on Sensor { sensorState { status } } }
    }"""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": "nightly_cycle_sensor"}
    answer = dep.graphql(mutation, {"selector": selector})["data"]["startSensor"]
    assert answer["__typename"] == "Sensor" and answer["sensorState"]["status"] == "RUNNING", answer
    now = dt.datetime.now(dt.UTC)
    cycle_id = nightly_cycle_id(get_latest_completed_cron_tick("0 2 * * *", now, "UTC"))
    deadline = time.monotonic() + 180
    with dep.instance() as instance:
        while True:
            runs = instance.get_run_records(dg.RunsFilter(job_name="cycle_job", tags={"dagster/partition": cycle_id}))
            if runs:
                break
            assert time.monotonic() < deadline, dep.logs()
            time.sleep(1)
        assert instance.has_dynamic_partition(cycles.name, cycle_id)
        assert runs[0].dagster_run.tags.get("dagster/sensor_name") == "nightly_cycle_sensor"
    wait_decisions(dep, [cycle_id])


def test_nothing_is_left_on_disk_outside_the_home_and_dagster_home(dep) -> None:
    # The instance is PostgreSQL: no SQLite storage appeared under DAGSTER_HOME.
    assert list(Path(dep.dagster_home).rglob("*.db")) == []
