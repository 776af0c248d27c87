"""The fault matrix (issue 9): each fault is injected for real, and each case asserts the message, the
exit, no duplicate job, no lost champion, and that the next run recovers.

Faults already exercised elsewhere are not repeated here: a job killed under the local backend
(services/test_local_jobs.py::test_a_running_job_whose_process_died_becomes_error), concurrent submits
of one run (test_concurrent_submits_of_one_run_start_one_job), create faults on HF Jobs that must never
make a second job (services/test_hf_jobs.py), a stale compare-and-swap on the registry
(services/test_champion.py). Read-only and full disks use a real tmpfs mount; where the machine does
not allow mounting (no root / no CAP_SYS_ADMIN) those cases are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.cycle.documents import PromotionDecisionDoc
from kotone_pipeline.orchestration.resources import JobBackendResource, KotoneHomeResource
from kotone_pipeline.orchestration.sensors import training_jobs_sensor
from kotone_pipeline.services.artifacts import CorruptStateError, CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionChangedError, ChampionRegistry
from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.hf_jobs import HfJobsBackend
from kotone_pipeline.services.jobs import JobBackendError, JobSpec
from kotone_pipeline.services.local_datasets import DatasetIntegrityError, LocalDatasetStore
from kotone_pipeline.services.local_jobs import LocalJobBackend
from kotone_pipeline_tests.documents import read_json
from kotone_pipeline_tests.hf_standin.fixtures import (
    FAST_RETRY,
    TOKEN,
    USER,
    hf_standin_fixture,  # noqa: F401 - the hf_standin fixture
)
from kotone_pipeline_tests.services.test_local_datasets import make_splits
from kotone_pipeline_tests.services.test_local_jobs import FAKE_TRAINER

VECTOR = {"energy": 1, "warmth": 2, "brightness": 3, "acousticness": 4, "complexity": 5, "nostalgia": 6}
DATASET = DatasetRef(store="local", name="kotone-music-params", version="abc", uri="/data/abc", data_hash="h")
runner = CliRunner()


def wait_for(condition: Callable[[], object], timeout_s: float = 30.0) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def champion(model_id: str, mae: float = 1.0) -> Champion:
    return Champion(
        model_id=model_id, model_uri=f"/m/{model_id}", cycle_id=model_id.split("/")[0], run_id="r0",
        holdout_mae=mae, decision_reason="test",
    )  # fmt: skip


@pytest.fixture
def trainer(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return [sys.executable, str(script)]


# --- tmpfs: read-only and full disks -------------------------------------------------------------------------


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (read-only / disk-full faults)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    # Read-only needs no file open for writing: a finished job's runner may take a moment to exit.
    wait_for(lambda: subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True).returncode == 0)


def test_read_only_home_mid_cycle_names_the_cause_keeps_the_champion_and_recovers(tmp_path, trainer) -> None:
    with tmpfs(tmp_path / "home", "64m") as home:
        arts = CycleArtifacts(home)
        registry = ChampionRegistry(arts.registry_dir)
        registry.promote(champion("c0/r0"), decision_id="c0/r0", expected_current=None)
        backend = LocalJobBackend(arts.jobs_dir, command=trainer)
        first = backend.submit(JobSpec(cycle_id="c1", run_id="r0", dataset=DATASET))
        wait_for(lambda: backend.statuses([first.job_id])[first.job_id].terminal)
        source = tmp_path / "in.jsonl"
        source.write_text(json.dumps({"request_text": "x", "source_type": "request_text",
                                      "target_hidden_params": {"vector": VECTOR}}) + "\n")  # fmt: skip

        remount(home, "ro")
        with pytest.raises(OSError, match="Read-only file system"):
            registry.promote(champion("c1/r0", 0.5), decision_id="c1/r0", expected_current="c0/r0")
        with pytest.raises(JobBackendError, match="Read-only file system"):
            backend.submit(JobSpec(cycle_id="c1", run_id="r1", dataset=DATASET))
        out = home / "imported.jsonl"
        result = runner.invoke(app, ["data", "import", str(source), "--scale", "10", "--out", str(out)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"{home}: not writable, so {out} cannot be created" in result.output
        assert registry.current().model_id == "c0/r0"  # the champion is intact

        remount(home, "rw")
        assert registry.promote(champion("c1/r0", 0.5), decision_id="c1/r0", expected_current="c0/r0")
        again = backend.submit(JobSpec(cycle_id="c1", run_id="r1", dataset=DATASET))
        assert backend.submit(JobSpec(cycle_id="c1", run_id="r0", dataset=DATASET)).job_id == first.job_id
        assert sorted(p.name for p in arts.jobs_dir.iterdir() if p.is_dir()) == sorted([first.job_id, again.job_id])
        assert runner.invoke(app, ["data", "import", str(source), "--scale", "10", "--out", str(out)]).exit_code == 0
        wait_for(lambda: backend.statuses([again.job_id])[again.job_id].terminal)


def test_a_full_disk_leaves_no_partial_file_and_the_champion_intact(tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    row = {"source_type": "request_text", "target_hidden_params": {"vector": VECTOR}}
    source.write_text(
        "".join(json.dumps({**row, "request_text": f"song {i} " + "la" * 200}) + "\n" for i in range(2000))
    )
    original = source.read_bytes()
    with tmpfs(tmp_path / "disk", "256k") as disk:
        registry = ChampionRegistry(disk / "registry")
        registry.promote(champion("c0/r0"), decision_id="c0/r0", expected_current=None)
        before = registry.champion_path.read_bytes()
        filler = disk / "filler"
        with pytest.raises(OSError, match="No space left"), filler.open("wb", buffering=0) as handle:
            while True:  # fill the disk
                handle.write(b"\0" * 4096)

        out = disk / "out.jsonl"
        result = runner.invoke(app, ["data", "import", str(source), "--scale", "10", "--out", str(out)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"{out}: cannot write (No space left on device); nothing was written" in result.output
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "registry"]  # no partial output, no temp file
        with pytest.raises(OSError, match="No space left"):
            registry.promote(champion("c1/r0", 0.5), decision_id="c1/r0", expected_current="c0/r0")
        assert registry.champion_path.read_bytes() == before and registry.current().model_id == "c0/r0"
        assert source.read_bytes() == original

        filler.unlink()  # the next run, with space again, recovers
        assert registry.promote(champion("c1/r0", 0.5), decision_id="c1/r0", expected_current="c0/r0")
        small = tmp_path / "small.jsonl"
        small.write_bytes(b"".join(original.splitlines(keepends=True)[:10]))
        assert runner.invoke(app, ["data", "import", str(small), "--scale", "10", "--out", str(out)]).exit_code == 0


# --- the orchestrating process dies mid-cycle --------------------------------------------------------------

SUBMITTER = """
import json, sys, time
from pathlib import Path
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.jobs import JobSpec
from kotone_pipeline.services.local_jobs import LocalJobBackend
from kotone_pipeline_tests.documents import submission
home, trainer = Path(sys.argv[1]), json.loads(sys.argv[2])
arts = CycleArtifacts(home)
backend = LocalJobBackend(arts.jobs_dir, command=trainer)
dataset = DatasetRef(store="local", name="kotone-music-params", version="abc", uri="/data/abc", data_hash="h")
job_ids = []
for run_id in ("r0", "r1"):
    state = backend.submit(JobSpec(cycle_id="c1", run_id=run_id, dataset=dataset, hparams={"sleep": 1}))
    job_ids.append(state.job_id)
arts.write("c1", submission("c1", job_ids))
print("submitted", flush=True)
time.sleep(600)  # the "Dagster process", killed here mid-cycle
"""


def sensor_tick(instance: dg.DagsterInstance, home: Path, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "kotone_home": KotoneHomeResource(home=str(home)),
            "job_backend": JobBackendResource(home=str(home)),
        },
    )
    return training_jobs_sensor(context), context.cursor


def test_killing_the_dagster_process_mid_cycle_then_restarting_reattaches_without_a_second_job(tmp_path, trainer):
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, str(home), json.dumps(trainer)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "submitted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    arts = CycleArtifacts(home)
    job_ids = [r["job_id"] for r in read_json(arts, "c1", "training_submission")["runs"]]

    # Restart: the same submission adopts the jobs that kept running without their parent.
    backend = LocalJobBackend(arts.jobs_dir, command=trainer)
    again = [
        backend.submit(JobSpec(cycle_id="c1", run_id=r, dataset=DATASET, hparams={"sleep": 1})) for r in ("r0", "r1")
    ]
    assert [s.job_id for s in again] == job_ids and all(s.adopted for s in again)
    assert sorted(p.name for p in arts.jobs_dir.iterdir() if p.is_dir()) == sorted(job_ids)

    with dg.instance_for_test() as instance:
        # A fresh sensor cursor (the restarted daemon) re-attaches to the jobs and asks for validation once.
        result, cursor = wait_for(
            lambda: (t := sensor_tick(instance, home, None)) and isinstance(t[0], dg.SensorResult) and t
        )
        [request] = result.run_requests
        assert request.partition_key == "c1"
        assert result.asset_events[0].metadata["completed"].value == 2
        later, _ = sensor_tick(instance, home, cursor)
        assert isinstance(later, dg.SkipReason)  # no second request from the same daemon
        restarted, _ = sensor_tick(instance, home, None)
        assert restarted.run_requests[0].run_key == request.run_key  # a second restart: Dagster dedupes the key
    assert len(list(arts.jobs_dir.glob("*/job.json"))) == 2


# --- corrupt state files -------------------------------------------------------------------------------------


def test_a_corrupt_champion_registry_is_named_with_how_to_recover(tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path / "registry")
    registry.promote(champion("c0/r0"), decision_id="c0/r0", expected_current=None)
    registry.champion_path.write_text('{"model_id": ')
    with pytest.raises(ValueError, match="corrupt champion registry") as caught:
        registry.current()
    assert str(registry.champion_path) in str(caught.value) and str(registry.history_path) in str(caught.value)
    # The recovery the message names: the last history line is the champion.
    registry.champion_path.write_text(registry.history_path.read_text().splitlines()[-1])
    assert registry.current().model_id == "c0/r0"


def test_a_corrupt_cycle_document_is_named_by_status_and_recovers_once_removed(tmp_path: Path) -> None:
    env = {"KOTONE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": None}
    assert runner.invoke(app, ["cycle", "new", "c1"], env=env).exit_code == 0
    doc = CycleArtifacts(tmp_path / "home").path("c1", "promotion_decision.json")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_bytes(b"[1, 2")
    result = runner.invoke(app, ["status"], env=env)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{doc}: corrupt cycle document" in result.output and "re-materialize promotion_decision" in result.output
    with pytest.raises(CorruptStateError):
        CycleArtifacts(tmp_path / "home").read("c1", PromotionDecisionDoc)
    doc.unlink()
    recovered = runner.invoke(app, ["status", "--json"], env=env)
    assert recovered.exit_code == 0 and json.loads(recovered.output)["cycles"][0]["cycle_id"] == "c1"


def test_a_corrupt_dataset_version_is_named_and_a_republish_recovers(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path / "datasets")
    ref = store.publish("c1", make_splits(), {"seed": 1})
    version_dir = store.version_dir(ref.name, ref.version)
    train = next(version_dir.glob("train*"))
    train.write_text(train.read_text().replace("calm", "loud", 1))
    with pytest.raises(DatasetIntegrityError, match="content does not match its hash") as caught:
        store.load(ref)
    assert str(train) in str(caught.value) and "re-materialize split_dataset" in str(caught.value)
    shutil.rmtree(version_dir)
    assert store.publish("c1", make_splits(), {"seed": 1}) == ref
    assert len(store.load(ref)["train"]) == 5


# --- two cycles at once ----------------------------------------------------------------------------------------


def test_two_cycles_promoting_at_once_make_exactly_one_champion(tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def promote(model_id: str) -> None:
        registry = ChampionRegistry(registry_dir)  # one registry object per "process"
        start.wait()
        try:
            outcomes[model_id] = registry.promote(champion(model_id), decision_id=model_id, expected_current=None)
        except ChampionChangedError as exc:
            outcomes[model_id] = exc

    threads = [threading.Thread(target=promote, args=(m,)) for m in ("c1/r0", "c2/r0")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [m for m, outcome in outcomes.items() if outcome is True]
    [loser] = [outcome for outcome in outcomes.values() if isinstance(outcome, ChampionChangedError)]
    assert len(winners) == 1 and winners[0] in str(loser)
    registry = ChampionRegistry(registry_dir)
    assert registry.current().model_id == winners[0] and len(registry.history()) == 1


# --- the HF stand-in misbehaving ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        lambda hub: hub.faults.fail("jobs.list", 429, times=2),
        lambda hub: hub.faults.fail("jobs.list", 500, times=2),
        lambda hub: hub.faults.delay("jobs.list", FAST_RETRY.request_timeout_s + 0.5, times=2),
    ],
    ids=["429", "500", "timeout"],
)
def test_hf_read_faults_are_retried_and_never_make_a_second_job(hf_standin, fault) -> None:
    hf_standin.hold_scheduling = True
    backend = HfJobsBackend(namespace=USER, token=TOKEN, endpoint=hf_standin.url, retry=FAST_RETRY)
    spec = JobSpec(cycle_id="c1", run_id="r1", trainer="lora", dataset=DATASET.model_copy(update={"store": "hf"}))
    submitted = backend.submit(spec)
    fault(hf_standin)
    assert backend.statuses([submitted.job_id])[submitted.job_id].stage == "SCHEDULING"
    fault(hf_standin)
    assert backend.submit(spec).job_id == submitted.job_id  # the lookup before create, retried: adopted
    assert hf_standin.count("jobs.create") == 1


def test_hf_faults_past_the_retry_bound_are_a_transient_error_and_the_next_tick_recovers(hf_standin) -> None:
    hf_standin.hold_scheduling = True
    backend = HfJobsBackend(namespace=USER, token=TOKEN, endpoint=hf_standin.url, retry=FAST_RETRY)
    spec = JobSpec(cycle_id="c1", run_id="r1", trainer="lora", dataset=DATASET.model_copy(update={"store": "hf"}))
    submitted = backend.submit(spec)
    hf_standin.faults.fail("jobs.list", 429, times=FAST_RETRY.attempts)
    with pytest.raises(JobBackendError, match="429") as caught:
        backend.statuses([submitted.job_id])
    assert caught.value.transient  # the sensor skips the tick and keeps its cursor (test_sensors)
    assert backend.statuses([submitted.job_id])[submitted.job_id].stage == "SCHEDULING"
    hf_standin.advance(3601)  # stuck in SCHEDULING past the limit: cancelled and reported, never left forever
    state = backend.statuses([submitted.job_id])[submitted.job_id]
    assert state.stage == "CANCELED" and "stuck in SCHEDULING" in state.message
    assert hf_standin.count("jobs.create") == 1
