"""HfJobsBackend against the local Hub stand-in, through the real huggingface_hub client.

Jobs really run (the stand-in executes ``uv run <pinned script URL>`` with this interpreter); tests about
bookkeeping and faults hold jobs in SCHEDULING so that nothing runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.hf_common import TRAINING_SCRIPT_PATH_IN_REPO
from kotone_pipeline.services.hf_datasets import HfHubDatasetStore
from kotone_pipeline.services.hf_job_records import ATTEMPT_LABEL, TIMEOUT_LABEL
from kotone_pipeline.services.hf_jobs import BudgetExceededError, HfJobsBackend
from kotone_pipeline.services.jobs import JobBackendError, JobSpec, JobState
from kotone_pipeline_tests.hf_standin.fixtures import (
    FAKE_TRAIN_SCRIPT,
    FAST_RETRY,
    TOKEN,
    USER,
    WANDB_KEY,
    hf_standin_fixture,  # noqa: F401 - the hf_standin fixture
    make_splits,
    wait_for,
)
from kotone_pipeline_tests.hf_standin.server import HubStandIn, iter_secret_hits

SETTLE_S = 2 * FAST_RETRY.request_timeout_s
PINNED = DatasetRef(store="hf", name=f"{USER}/kotone-data", version="a" * 40, uri="unused", data_hash="b" * 64)


@pytest.fixture
def make_backend(hf_standin: HubStandIn) -> Callable[..., HfJobsBackend]:
    def make(**overrides: object) -> HfJobsBackend:
        options: dict = {
            "namespace": USER,
            "token": TOKEN,
            "endpoint": hf_standin.url,
            "flavor": "a10g-small",
            "secret_source": {"WANDB_API_KEY": WANDB_KEY},
            "retry": FAST_RETRY,
            "budget_usd_per_cycle": 10.0,
            # Longer than a create the stand-in delays past the client's timeout (timeout + 0.5 s).
            "create_settle_s": SETTLE_S,
        }
        options.update(overrides)
        return HfJobsBackend(**options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def backend(make_backend: Callable[..., HfJobsBackend]) -> HfJobsBackend:
    return make_backend()


@pytest.fixture
def held(hf_standin: HubStandIn) -> HubStandIn:
    """No job leaves SCHEDULING: bookkeeping and fault tests start no process."""
    hf_standin.hold_scheduling = True
    return hf_standin


@pytest.fixture
def dataset(hf_standin: HubStandIn) -> DatasetRef:
    store = HfHubDatasetStore(
        f"{USER}/kotone-data", token=TOKEN, endpoint=hf_standin.url, training_script=FAKE_TRAIN_SCRIPT
    )
    return store.publish("c1", make_splits(), {"seed": 1})


def spec(run_id: str = "r1", cycle_id: str = "c1", dataset: DatasetRef = PINNED, **kw: object) -> JobSpec:
    return JobSpec(cycle_id=cycle_id, run_id=run_id, trainer="lora", dataset=dataset, **kw)  # type: ignore[arg-type]


def jobs_of_run(hub: HubStandIn, cycle_id: str = "c1", run_id: str = "r1") -> list:
    return [
        j
        for j in hub.jobs.values()
        if (j.spec.get("labels") or {}).get("kotone-cycle") == cycle_id
        and (j.spec.get("labels") or {}).get("kotone-run") == run_id
    ]


def poll_until_terminal(backend: HfJobsBackend, job_id: str, timeout_s: float = 60.0) -> JobState:
    return wait_for(lambda: (s := backend.statuses([job_id])[job_id]).terminal and s, timeout_s=timeout_s)


# --- the happy path -----------------------------------------------------------------------------------------


def test_submit_poll_complete_and_fetch_outputs(backend, hf_standin, dataset, tmp_path):
    submitted = backend.submit(spec(dataset=dataset, timeout_s=900, hparams={"learning_rate": 1e-5}))
    assert submitted.adopted is False
    assert submitted.url == f"{hf_standin.url}/jobs/{USER}/{submitted.job_id}"
    assert submitted.output_uri == f"{USER}/kotone-runs@cycle-c1-r1"

    final = poll_until_terminal(backend, submitted.job_id)
    assert final.stage == "COMPLETED", final.message
    assert final.running_s is not None and final.cost_usd is not None
    assert final.cost_usd == pytest.approx(final.running_s * 1.00 / 3600, abs=1e-6)  # a10g-small: $1/h

    out = backend.fetch_outputs(final, tmp_path / "out")
    predicted = [json.loads(line)["pair_id"] for line in (out / "predictions_validation.jsonl").open()]
    assert predicted == [p.id for p in make_splits()["validation"]]
    assert (out / "predictions_holdout.jsonl").is_file() and (out / "metrics.json").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["hparams"] == {"learning_rate": 1e-5}
    branch_head = hf_standin.repos[("model", f"{USER}/kotone-runs")].branches["cycle-c1-r1"]
    assert (out / "outputs_revision.txt").read_text().strip() == f"{USER}/kotone-runs@{branch_head}"


def test_the_job_is_created_with_explicit_settings_and_secrets_only_as_secrets(backend, hf_standin, dataset):
    hf_standin.hold_scheduling = True
    backend.submit(spec(dataset=dataset, timeout_s=1200))
    (job,) = hf_standin.jobs.values()
    body = job.spec
    assert body["flavor"] == "a10g-small"
    assert body["timeoutSeconds"] == 1200
    assert body["labels"]["kotone-project"] == "kotone"
    assert (body["labels"]["kotone-cycle"], body["labels"]["kotone-run"]) == ("c1", "r1")
    repo_url = f"{hf_standin.url}/datasets/{USER}/kotone-data"
    script_url = f"{repo_url}/resolve/{dataset.version}/{TRAINING_SCRIPT_PATH_IN_REPO}"
    assert body["command"][:3] == ["uv", "run", script_url]
    assert f"--dataset-revision={dataset.version}" in body["command"]
    assert "--output-revision=cycle-c1-r1" in body["command"]
    assert body["secrets"] == {"HF_TOKEN": TOKEN, "WANDB_API_KEY": WANDB_KEY}
    env_text = json.dumps(body["environment"])
    assert TOKEN not in env_text and WANDB_KEY not in env_text
    assert body["environment"]["HF_ENDPOINT"] == hf_standin.url
    # The output branch exists before the job starts.
    assert "cycle-c1-r1" in hf_standin.repos[("model", f"{USER}/kotone-runs")].branches


def test_secret_like_env_is_refused(backend, held):
    with pytest.raises(JobBackendError, match="MY_API_KEY") as err:
        backend.submit(spec(env={"MY_API_KEY": "x"}))
    assert err.value.transient is False
    assert held.count("jobs.create") == 0


def test_an_adopted_job_reports_where_it_was_told_to_write(make_backend, held):
    first = make_backend(output_repo=f"{USER}/old-runs").submit(spec())
    adopted = make_backend(output_repo=f"{USER}/new-runs").submit(spec())
    assert adopted.adopted and adopted.output_uri == first.output_uri == f"{USER}/old-runs@cycle-c1-r1"


def test_jobs_lists_a_cycles_runs_oldest_first(backend, held):
    backend.submit(spec(run_id="r1"))
    held.advance(5)
    backend.submit(spec(run_id="r2"))
    backend.submit(spec(run_id="r1", cycle_id="c2"))
    assert [s.run_id for s in backend.jobs("c1")] == ["r1", "r2"]
    assert len(backend.jobs()) == 3


def test_only_the_lora_trainer_runs_on_hf_jobs(backend, held):
    with pytest.raises(JobBackendError, match="trainer='lora'") as err:
        backend.submit(spec().model_copy(update={"trainer": "local"}))
    assert err.value.transient is False
    assert held.count("jobs.create") == 0


def test_resubmitting_a_run_adopts_its_job(backend, held):
    first = backend.submit(spec())
    second = backend.submit(spec())
    assert second.adopted is True and second.job_id == first.job_id
    assert held.count("jobs.create") == 1
    assert backend.find("c1", "r1").job_id == first.job_id
    assert backend.find("c1", "r9") is None


# --- failure, cancellation, scheduling ----------------------------------------------------------------------


def test_a_failed_job_reports_its_log_tail(backend, dataset):
    submitted = backend.submit(spec(dataset=dataset, hparams={"fail": True}))
    final = poll_until_terminal(backend, submitted.job_id)
    assert final.stage == "ERROR"
    assert "exit code: 1" in final.message
    assert "CUDA out of memory (fake)" in final.message
    assert "step 4: loss nan" in final.message


def test_a_run_whose_job_timed_out_is_submitted_again_to_the_same_branch_once(backend, hf_standin, dataset):
    first = backend.submit(spec(dataset=dataset, timeout_s=600, hparams={"sleep_s": 60}))
    wait_for(lambda: backend.statuses([first.job_id])[first.job_id].stage == "RUNNING")
    hf_standin.advance(601)  # the machine's watchdog kills the job at its timeout
    failed = poll_until_terminal(backend, first.job_id)
    assert failed.stage == "ERROR" and "timeout" in failed.message.lower()
    assert failed.attempt == 1 and backend.resubmits(failed)  # the sensor submits it again by itself

    second = backend.submit(spec(dataset=dataset, timeout_s=600, hparams={"sleep_s": 60}))
    assert not second.adopted and second.job_id != first.job_id
    assert second.output_uri == first.output_uri  # the same branch: the script resumes from its checkpoint
    job = hf_standin.jobs[second.job_id]
    assert job.spec["labels"][ATTEMPT_LABEL] == "2" and job.spec["labels"]["kotone-run"] == "r1"
    # Submitting again adopts the live attempt: never two jobs at once for one run.
    third = backend.submit(spec(dataset=dataset, timeout_s=600, hparams={"sleep_s": 60}))
    assert third.adopted and third.job_id == second.job_id
    assert len(jobs_of_run(hf_standin)) == 2
    # The second attempt timing out too ends the run: no attempts left.
    hf_standin.advance(601)
    again = poll_until_terminal(backend, second.job_id)
    assert again.attempt == 2 and "timeout" in again.message.lower() and not backend.resubmits(again)


def test_a_job_that_failed_otherwise_is_adopted_not_submitted_again(backend, held):
    held.add_job(USER, {"kotone-project": "kotone", "kotone-cycle": "c1", "kotone-run": "r1"}, stage="ERROR")
    state = backend.submit(spec())
    assert state.adopted and state.stage == "ERROR"
    assert len(jobs_of_run(held)) == 1
    assert not backend.resubmits(state.model_copy(update={"message": "exit code 1\nrequests: read timed out"}))


def test_cancel_stops_a_running_job(backend, hf_standin, dataset):
    submitted = backend.submit(spec(dataset=dataset, hparams={"sleep_s": 60}))
    wait_for(lambda: backend.statuses([submitted.job_id])[submitted.job_id].stage == "RUNNING")
    backend.cancel(submitted.job_id)
    final = backend.statuses([submitted.job_id])[submitted.job_id]
    assert final.stage == "CANCELED" and final.terminal
    job = hf_standin.jobs[submitted.job_id]
    wait_for(lambda: job.process is not None and job.process.poll() is not None, timeout_s=10)


def test_a_job_stuck_in_scheduling_is_cancelled_after_the_limit(make_backend, held):
    backend = make_backend(scheduling_limit_s=3600)
    submitted = backend.submit(spec())
    assert backend.statuses([submitted.job_id])[submitted.job_id].stage == "SCHEDULING"
    held.advance(1800)
    assert backend.statuses([submitted.job_id])[submitted.job_id].stage == "SCHEDULING"
    assert held.count("jobs.cancel") == 0
    held.advance(1801)
    state = backend.statuses([submitted.job_id])[submitted.job_id]
    assert state.stage == "CANCELED"
    assert "stuck in SCHEDULING" in state.message and "limit 3600s" in state.message
    assert held.jobs[submitted.job_id].stage == "CANCELED"
    assert held.count("jobs.cancel") == 1
    again = backend.statuses([submitted.job_id])[submitted.job_id]
    assert again.stage == "CANCELED" and "stuck in SCHEDULING" in again.message
    assert held.count("jobs.cancel") == 1


# --- faults: never a duplicate job --------------------------------------------------------------------------


def test_500_on_create_when_the_job_was_created_adopts_it(backend, held):
    held.faults.fail_after("jobs.create", 500)
    state = backend.submit(spec())
    assert state.adopted is True
    assert [j.id for j in jobs_of_run(held)] == [state.job_id]
    assert held.count("jobs.create") == 1
    assert backend.submit(spec()).job_id == state.job_id
    assert held.count("jobs.create") == 1


def test_a_create_that_times_out_but_happened_is_adopted(backend, held):
    held.faults.fail_after("jobs.create", status=None, delay_s=FAST_RETRY.request_timeout_s + 0.5)
    state = backend.submit(spec())
    assert state.adopted is True
    assert len(jobs_of_run(held)) == 1 and held.count("jobs.create") == 1


def test_a_create_that_failed_is_transient_and_a_later_submit_creates_one(make_backend, held):
    backend = make_backend(create_settle_s=0.2)
    held.faults.fail("jobs.create", 503)
    with pytest.raises(JobBackendError, match="no job exists") as err:
        backend.submit(spec())
    assert err.value.transient is True
    assert jobs_of_run(held) == []
    # The 503 may hide a create still under way: for a while, no second create.
    with pytest.raises(JobBackendError, match="unknown outcome") as err:
        backend.submit(spec())
    assert err.value.transient is True
    assert held.count("jobs.create") == 1
    time.sleep(0.25)
    state = backend.submit(spec())
    assert state.adopted is False
    assert [j.id for j in jobs_of_run(held)] == [state.job_id]
    assert held.count("jobs.create") == 2


def test_a_refused_create_is_not_held_back(backend, held):
    held.faults.fail("jobs.create", 429)
    with pytest.raises(JobBackendError, match="429") as err:
        backend.submit(spec())
    assert err.value.transient is True
    assert backend.submit(spec()).adopted is False
    assert len(jobs_of_run(held)) == 1


def test_when_the_lookup_after_a_failed_create_also_fails_the_next_submit_adopts(backend, held):
    held.faults.fail_after("jobs.create", 500)
    # The lookup before creating works; the reconciling lookup after it gives up.
    held.faults.fail("jobs.list", 503, times=FAST_RETRY.attempts, skip=1)
    with pytest.raises(JobBackendError, match="outcome is unknown") as err:
        backend.submit(spec())
    assert err.value.transient is True
    state = backend.submit(spec())
    assert state.adopted is True
    assert len(jobs_of_run(held)) == 1 and held.count("jobs.create") == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"when": "before", "status": 500},
        {"when": "after", "status": 502},
        {"when": "after", "status": None, "delay_s": FAST_RETRY.request_timeout_s + 0.5},
        # The create reaches the Hub only after the client gave up: the hardest case.
        {"when": "before", "status": None, "delay_s": FAST_RETRY.request_timeout_s + 0.5},
    ],
)
def test_no_fault_on_create_ever_makes_a_second_job(backend, held, fault):
    held.faults.add("jobs.create", **fault)
    states: list[JobState] = []
    deadline = time.monotonic() + SETTLE_S + 3
    while not states and time.monotonic() < deadline:  # what a sensor does: submit again next tick
        try:
            states.append(backend.submit(spec()))
        except JobBackendError as exc:
            assert exc.transient
            time.sleep(0.1)
    time.sleep(fault.get("delay_s", 0))  # let a late create land before counting
    assert len(jobs_of_run(held)) == 1
    assert [s.job_id for s in states] == [jobs_of_run(held)[0].id]
    assert backend.submit(spec()).job_id == states[0].job_id


def test_a_refused_create_is_permanent_and_not_reconciled(backend, held):
    held.faults.fail("jobs.create", 402, message="Payment required")
    before = held.count("jobs.list")
    with pytest.raises(JobBackendError, match="402") as err:
        backend.submit(spec())
    assert err.value.transient is False
    assert held.count("jobs.list") == before + 1  # only the lookup before creating
    assert jobs_of_run(held) == []


# --- faults on reads ----------------------------------------------------------------------------------------


def test_list_is_retried_on_503_and_timeouts_then_succeeds(backend, held):
    job = backend.submit(spec())
    held.clear_requests()
    held.faults.fail("jobs.list", 503)
    held.faults.delay("jobs.list", FAST_RETRY.request_timeout_s + 0.5)
    states = backend.statuses([job.job_id])
    assert states[job.job_id].stage == "SCHEDULING"
    assert held.count("jobs.list") == 3


def test_list_failures_past_the_bound_raise_a_transient_error(backend, held):
    job = backend.submit(spec())
    held.clear_requests()
    held.faults.fail("jobs.list", 503, times=10)
    with pytest.raises(JobBackendError, match="HTTP 503") as err:
        backend.statuses([job.job_id])
    assert err.value.transient is True
    assert held.count("jobs.list") == FAST_RETRY.attempts


def test_inspect_is_retried_on_timeouts(backend, held):
    # A job without the project label is not in the list: statuses() inspects it.
    other = held.add_job(USER, {"team": "other"}, stage="RUNNING")
    held.faults.delay("jobs.inspect", FAST_RETRY.request_timeout_s + 0.5)
    held.faults.fail("jobs.inspect", 503)
    state = backend.statuses([other.id])[other.id]
    assert state.stage == "RUNNING"
    assert held.count("jobs.inspect") == 3


def test_unknown_job_ids_are_left_out(backend, held):
    assert backend.statuses(["0" * 24]) == {}


def test_log_fetch_is_retried(backend, held):
    job = held.add_job(USER, {"kotone-project": "kotone"}, stage="ERROR")
    job.logs.append(("2026-01-01T00:00:00.000Z", "boom"))
    held.faults.fail("jobs.logs", 503)
    assert backend.logs_tail(job.id, 10) == "boom"


def test_an_unreadable_log_tail_does_not_hide_the_error(backend, held):
    job = held.add_job(USER, {"kotone-project": "kotone", "kotone-cycle": "c1", "kotone-run": "r1"}, stage="ERROR")
    job.message = "Job failed with exit code: 3"
    held.faults.fail("jobs.logs", 503, times=10)
    state = backend.statuses([job.id])[job.id]
    assert state.stage == "ERROR"
    assert "exit code: 3" in state.message and "log tail unavailable" in state.message


# --- one list per tick, states, cost ------------------------------------------------------------------------


def test_statuses_of_many_jobs_use_one_list_request(make_backend, hf_standin):
    backend = make_backend()
    hf_standin.jobs_page_size = 50
    jobs = [
        hf_standin.add_job(
            USER,
            {"kotone-project": "kotone", "kotone-cycle": f"c{i % 4}", "kotone-run": f"r{i}"},
            stage=("SCHEDULING", "RUNNING", "COMPLETED", "UPDATING")[i % 4],
            running_s=1800,
        )
        for i in range(120)
    ]
    hf_standin.add_job(USER, {"kotone-project": "someone-else"}, stage="RUNNING")
    states = backend.statuses([j.id for j in jobs])
    assert set(states) == {j.id for j in jobs}
    assert hf_standin.count("jobs.list", first_page_only=True) == 1
    assert hf_standin.count("jobs.inspect") == 0
    running = states[jobs[1].id]
    assert running.stage == "RUNNING" and running.cycle_id == "c1" and running.run_id == "r1"
    assert running.cost_usd == pytest.approx(0.5)  # 1800 s on a10g-small at $1.00/h
    assert states[jobs[3].id].stage == "UPDATING" and not states[jobs[3].id].terminal


def test_budget_refuses_a_job_the_cycle_cannot_afford(make_backend, held):
    backend = make_backend(budget_usd_per_cycle=2.0)
    # Spent: a finished run of 1800 s ($0.50); committed: an open one with a 1800 s timeout ($0.50).
    held.add_job(
        USER,
        {"kotone-project": "kotone", "kotone-cycle": "c1", "kotone-run": "old"},
        stage="ERROR",
        running_s=1800,
    )
    # The budget counts the timeout recorded on the job (our label), whatever else it was created with: 1800 s.
    held.add_job(
        USER,
        {"kotone-project": "kotone", "kotone-cycle": "c1", "kotone-run": "open", TIMEOUT_LABEL: "1800"},
        stage="RUNNING",
        timeout_s=36000,
    )
    held.add_job(
        USER,
        {"kotone-project": "kotone", "kotone-cycle": "c2", "kotone-run": "x"},
        stage="RUNNING",
        timeout_s=36000,
    )
    creates = held.count("jobs.create")
    with pytest.raises(BudgetExceededError, match=r"up to \$1\.50.*\$1\.00 of \$2\.00") as err:
        backend.submit(spec(run_id="r2", timeout_s=5400))
    assert err.value.transient is False
    assert held.count("jobs.create") == creates and jobs_of_run(held, run_id="r2") == []
    assert backend.submit(spec(run_id="r3", timeout_s=3600)).stage == "SCHEDULING"


def test_an_explicit_timeout_above_the_maximum_is_refused(make_backend, held):
    backend = make_backend(max_timeout_s=3600)
    with pytest.raises(JobBackendError, match="outside 1..3600s"):
        backend.submit(spec(timeout_s=7200))


def test_prices_can_be_refreshed_from_the_hub(backend, held):
    prices = backend.refresh_prices()
    assert prices["a10g-small"] == pytest.approx(1.0, rel=1e-3)
    assert prices["h200"] == pytest.approx(5.0, rel=1e-3)


def test_an_open_job_without_our_timeout_label_is_counted_at_the_maximum(make_backend, held):
    backend = make_backend(budget_usd_per_cycle=3.0, max_timeout_s=3 * 3600)
    held.add_job(USER, {"kotone-project": "kotone", "kotone-cycle": "c1", "kotone-run": "x"}, timeout_s=600)
    with pytest.raises(BudgetExceededError, match=r"committed \$3\.00"):
        backend.submit(spec(run_id="r2", timeout_s=600))


def test_the_submitted_timeout_is_a_label_of_the_job(backend, held):
    backend.submit(spec(timeout_s=1320))
    (job,) = held.jobs.values()
    assert job.spec["labels"][TIMEOUT_LABEL] == "1320" and job.spec["timeoutSeconds"] == 1320


def test_prices_are_refreshed_once_per_cycle_and_fall_back_to_the_table_with_a_note(backend, held):
    backend.prices["a10g-small"] = 9.0  # stale
    assert backend.prepare_cycle("c1") == {
        "source": "list_jobs_hardware",
        "flavor": "a10g-small",
        "usd_per_hour": pytest.approx(1.0, rel=1e-3),
    }
    held.faults.fail("jobs.hardware", 500, times=FAST_RETRY.attempts)
    backend.prices["a10g-small"] = 1.25
    pricing = backend.prepare_cycle("c2")
    assert pricing["source"] == "table" and pricing["usd_per_hour"] == 1.25
    assert "list_jobs_hardware failed" in pricing["note"]


def test_a_listed_job_of_another_run_is_never_adopted_even_when_the_server_ignores_the_filter(backend, held):
    other = held.add_job(USER, {"kotone-project": "kotone", "kotone-cycle": "c1", "kotone-run": "r9"})
    held.ignore_label_filter = True
    assert backend.find("c1", "r1") is None
    state = backend.submit(spec(run_id="r1"))
    assert state.job_id != other.id and not state.adopted
    assert backend.find("c1", "r1").job_id == state.job_id


# --- secrets ------------------------------------------------------------------------------------------------


def test_secrets_appear_only_in_the_authorization_header_and_the_job_secrets(backend, hf_standin, dataset, tmp_path):
    ok = backend.submit(spec(dataset=dataset))
    failed = backend.submit(spec(run_id="r2", dataset=dataset, hparams={"fail": True}))
    states = [poll_until_terminal(backend, ok.job_id), poll_until_terminal(backend, failed.job_id)]
    backend.fetch_outputs(states[0], tmp_path)
    hf_standin.faults.fail("jobs.list", 400, message=f"invalid token {TOKEN} for {WANDB_KEY}")
    with pytest.raises(JobBackendError) as err:
        backend.statuses([ok.job_id])
    assert "***" in str(err.value)
    for secret in (TOKEN, WANDB_KEY):
        assert list(iter_secret_hits(hf_standin, secret)) == []
        assert secret not in str(err.value)
        assert all(secret not in s.model_dump_json() for s in states)
        assert all(secret not in p.read_text() for p in Path(tmp_path).iterdir())
    creates = [json.loads(r.body) for r in hf_standin.requests if r.route == "jobs.create"]
    assert creates and all(c["secrets"]["HF_TOKEN"] == TOKEN for c in creates)
