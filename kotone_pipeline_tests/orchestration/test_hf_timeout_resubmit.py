"""A job that runs past its timeout, through Dagster on the HF stand-in: the sensor submits the run again
(attempt 2, same output branch), the new job resumes from the checkpoint the first one pushed, and the cycle
validates and decides from the second attempt's outputs, with exactly two jobs for that run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import dagster as dg
import huggingface_hub.constants
import pytest
from huggingface_hub import set_client_factory
from huggingface_hub.utils import _http as hf_http

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.assets.cycle import training_submission
from kotone_pipeline.orchestration.runner import CycleRunner
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.hf_job_records import ATTEMPT_LABEL
from kotone_pipeline_tests.documents import read_json
from kotone_pipeline_tests.hf_standin.fixtures import TOKEN, USER, hf_cycle_env
from kotone_pipeline_tests.hf_standin.server import HubStandIn

pytestmark = pytest.mark.slow
CYCLE = "t1"
TIMEOUT_S = 600
RUNS_REPO = f"{USER}/kotone-runs"


class TimeoutRunner(CycleRunner):
    """After the cycle's submission, waits until the first job pushed its checkpoint, then moves the stand-in's
    clock past the job's timeout: the machine's watchdog kills it, as HF Jobs does."""

    def __init__(self, *args: Any, hub: HubStandIn, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hub = hub

    def _execute(self, job_name: str, partition_key: str | None = None, tags: dict[str, str] | None = None) -> None:
        super()._execute(job_name, partition_key, tags)
        if job_name == "cycle_job":
            (job,) = self.hub.jobs.values()
            deadline = time.monotonic() + 60
            while not any("checkpoint pushed" in line for _, line in job.logs):
                assert time.monotonic() < deadline, "the first job never pushed its checkpoint"
                time.sleep(0.05)
            self.hub.advance(TIMEOUT_S + 1)


@pytest.fixture(scope="module")
def timed_out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("kotone")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        mp.delenv("WANDB_API_KEY", raising=False)
        hub = HubStandIn({TOKEN: USER}).start()
        hub.machine_env["FAKE_TRAIN_STALL_S"] = "120"
        env = hf_cycle_env(home, hub.url, KOTONE_CAMPAIGN_SIZE="1", KOTONE_JOB_TIMEOUT_S=str(TIMEOUT_S))
        for name, value in env.items():
            mp.setenv(name, value)
        try:
            with dg.instance_for_test() as instance:
                defs = build_definitions(env)
                runner = TimeoutRunner(defs, instance, hub=hub, poll_interval_s=0.2)
                report = runner.run_cycle(CYCLE, timeout_s=120)
                yield SimpleNamespace(hub=hub, arts=CycleArtifacts(home), instance=instance, report=report, defs=defs)
        finally:
            hub.stop()
            set_client_factory(hf_http.default_client_factory)


def test_the_timed_out_run_is_submitted_again_once_and_the_cycle_completes(timed_out) -> None:
    jobs = sorted(timed_out.hub.jobs.values(), key=lambda j: j.created)
    assert len(jobs) == 2  # zero duplicates: one job per attempt
    first, second = jobs
    assert first.stage == "ERROR" and "timeout" in (first.message or "").lower()
    assert second.stage == "COMPLETED"
    assert {j.spec["labels"]["kotone-run"] for j in jobs} == {"r0"}
    assert ATTEMPT_LABEL not in first.spec["labels"] and second.spec["labels"][ATTEMPT_LABEL] == "2"
    # The same output branch: the second job found the first one's checkpoint and did not hang.
    assert first.spec["environment"]["KOTONE_OUTPUT_REVISION"] == second.spec["environment"]["KOTONE_OUTPUT_REVISION"]
    assert any("resuming from checkpoint" in line for _, line in second.logs)
    assert timed_out.report.decision in ("promote", "keep")


def test_the_submission_doc_and_its_observation_record_the_new_job_and_attempt(timed_out) -> None:
    first, second = sorted(timed_out.hub.jobs.values(), key=lambda j: j.created)
    # The asset's document keeps what it submitted; the polling path alone records the re-submission.
    (run,) = read_json(timed_out.arts, CYCLE, "training_submission")["runs"]
    assert run["job_id"] == first.id and run["attempt"] == 1
    attempts = read_json(timed_out.arts, CYCLE, "attempts")["runs"]["r0"]
    assert attempts["current"]["job_id"] == second.id and attempts["current"]["attempt"] == 2
    (earlier,) = attempts["earlier_jobs"]
    assert earlier["job_id"] == first.id and earlier["attempt"] == 1 and "timeout" in earlier["message"].lower()
    observation = timed_out.instance.fetch_observations(dg.AssetKey("training_submission"), limit=5).records
    (record,) = [r for r in observation if r.partition_key == CYCLE]
    metadata = record.asset_observation.metadata
    assert metadata["job_ids"].value == [second.id] and metadata["attempts"].value == {"r0": 2}


def test_validation_used_the_second_attempts_outputs(timed_out) -> None:
    second = max(timed_out.hub.jobs.values(), key=lambda j: j.created)
    (run,) = read_json(timed_out.arts, CYCLE, "validation_snapshot")["runs"]
    assert run["job_id"] == second.id and run["stage"] == "COMPLETED"
    branch = timed_out.hub.repos[("model", RUNS_REPO)].branches[f"cycle-{CYCLE}-r0"]
    assert run["model_uri"] == f"{RUNS_REPO}@{branch}"
    run_json = timed_out.hub.repos[("model", RUNS_REPO)].commits[branch].files["run.json"].data
    assert b'"resumed_from_checkpoint": true' in run_json


def test_rematerializing_training_submission_afterwards_creates_no_job_and_keeps_the_history(timed_out) -> None:
    attempts_before = read_json(timed_out.arts, CYCLE, "attempts")
    result = dg.materialize(
        [training_submission], resources=timed_out.defs.resources, partition_key=CYCLE, instance=timed_out.instance
    )
    assert result.success
    assert len(timed_out.hub.jobs) == 2  # the run has used its attempts: its last job is adopted
    (run,) = read_json(timed_out.arts, CYCLE, "training_submission")["runs"]
    assert run["job_id"] == attempts_before["runs"]["r0"]["current"]["job_id"] and run["attempt"] == 2
    assert run["adopted"]
    assert read_json(timed_out.arts, CYCLE, "attempts") == attempts_before  # only the polling path writes it
