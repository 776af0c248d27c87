"""LocalJobBackend against real subprocesses: a tiny fake trainer stands in for train_local."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.jobs import InvalidIdError, JobBackendError, JobSpec, JobState
from kotone_pipeline.services.local_jobs import (
    JOB_FILE,
    THREAD_LIMIT_ENV,
    JobRecord,
    LocalJobBackend,
    job_id_for,
    process_alive,
    process_marker,
    read_record,
    write_record,
)

FAKE_TRAINER = """
import argparse, json, os, pathlib, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--dataset"); parser.add_argument("--out"); parser.add_argument("--hparams")
args = parser.parse_args()
hparams = json.loads(args.hparams)
out = pathlib.Path(args.out)
if os.environ.get("FAKE_COUNTER"):
    with open(os.environ["FAKE_COUNTER"], "a") as handle:
        handle.write(f"{os.getpid()}\\n")
(out / "pid").write_text(str(os.getpid()))
time.sleep(hparams.get("sleep", 0))
if hparams.get("fail"):
    print("boom: " + hparams["fail"], file=sys.stderr)
    sys.exit(3)
(out / "metrics.json").write_text(json.dumps({
    "dataset": args.dataset,
    "hparams": hparams,
    "wandb_mode": os.environ.get("WANDB_MODE"),
    "token_seen": os.environ.get("HF_TOKEN"),
    "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    "home": os.environ.get("KOTONE_HOME"),
    "embedding_cache": os.environ.get("KOTONE_EMBEDDING_CACHE"),
}))
(out / "predictions_validation.jsonl").write_text('{"pair_id": "p_1"}\\n')
"""

DATASET = DatasetRef(store="local", name="kotone-music-params", version="abc", uri="/data/abc", data_hash="h")


@pytest.fixture
def fake_trainer(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    return [sys.executable, str(script)]


@pytest.fixture
def backend(tmp_path: Path, fake_trainer: list[str]) -> Iterator[LocalJobBackend]:
    backend = LocalJobBackend(tmp_path / "jobs", command=fake_trainer)
    yield backend
    for state in backend.jobs():  # a failed test must not leave long sleepers behind
        if not state.terminal:
            backend.cancel(state.job_id)


def spec(run_id: str = "r1", cycle_id: str = "c1", **kwargs: object) -> JobSpec:
    return JobSpec(cycle_id=cycle_id, run_id=run_id, dataset=DATASET, **kwargs)  # type: ignore[arg-type]


def wait_terminal(backend: LocalJobBackend, job_id: str, timeout: float = 15.0) -> JobState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = backend.statuses([job_id])[job_id]
        if state.terminal:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {state.stage} after {timeout}s")


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def job_dirs(backend: LocalJobBackend) -> list[str]:
    return sorted(p.name for p in backend.root.iterdir())


def test_completed_job_has_outputs_and_exit_code(backend: LocalJobBackend, tmp_path: Path) -> None:
    hparams = {"sleep": 0.1, "alpha": 0.5}
    run = spec(hparams=hparams, env={"WANDB_MODE": "offline", "HF_TOKEN": "hf_s3cr3t"})
    submitted = backend.submit(run)
    assert submitted.adopted is False and submitted.backend == "local"

    state = wait_terminal(backend, submitted.job_id)

    assert state.stage == "COMPLETED" and state.exit_code == 0 and state.message is None
    assert state.running_s is not None and state.running_s >= 0.1  # the trainer slept 0.1 s
    assert state.cost_usd == 0.0
    job_dir = backend.root / submitted.job_id
    assert state.url == job_dir.as_uri()
    fetched = backend.fetch_outputs(state, tmp_path / "fetched")
    metrics = json.loads((fetched / "metrics.json").read_text())
    # The trainer received the spec's dataset uri and hparams, and the env (secrets by environment only).
    assert metrics["dataset"] == DATASET.uri and metrics["hparams"] == hparams
    assert metrics["wandb_mode"] == "offline" and metrics["token_seen"] == "hf_s3cr3t"
    assert (fetched / "predictions_validation.jsonl").exists()
    on_disk = (job_dir / JOB_FILE).read_text()
    assert "hf_s3cr3t" not in on_disk and "offline" in on_disk


def test_failed_job_is_error_with_stderr_in_log_and_message(backend: LocalJobBackend) -> None:
    job_id = backend.submit(spec(hparams={"fail": "dataset is empty"})).job_id

    state = wait_terminal(backend, job_id)

    assert state.stage == "ERROR" and state.exit_code == 3
    assert "exited with code 3" in state.message and "boom: dataset is empty" in state.message
    assert "boom: dataset is empty" in backend.logs_tail(job_id, lines=20)
    assert "boom" not in backend.logs_tail(job_id, lines=0)


def test_cancel_stops_the_process_group_and_marks_canceled(backend: LocalJobBackend) -> None:
    job_id = backend.submit(spec(hparams={"sleep": 30})).job_id
    pid_file = backend.root / job_id / "output" / "pid"
    wait_for(pid_file.exists)
    trainer_pid = int(pid_file.read_text())

    backend.cancel(job_id)

    state = backend.statuses([job_id])[job_id]
    assert state.stage == "CANCELED" and state.finished_at is not None
    wait_for(lambda: not process_alive(trainer_pid, None), timeout=5)
    record = read_record(backend.root / job_id)
    wait_for(lambda: not process_alive(record.runner_pid, record.runner_marker), timeout=5)
    # The runner recorded the trainer's exit (SIGTERM) but kept the CANCELED stage.
    wait_for(lambda: read_record(backend.root / job_id).exit_code is not None, timeout=5)
    assert read_record(backend.root / job_id).stage == "CANCELED"
    assert read_record(backend.root / job_id).exit_code == -signal.SIGTERM


def test_cancel_of_a_finished_job_changes_nothing(backend: LocalJobBackend) -> None:
    job_id = backend.submit(spec()).job_id
    wait_terminal(backend, job_id)
    backend.cancel(job_id)
    assert backend.statuses([job_id])[job_id].stage == "COMPLETED"


def test_timeout_kills_the_job_and_marks_error(backend: LocalJobBackend) -> None:
    started = time.monotonic()
    job_id = backend.submit(spec(hparams={"sleep": 30}, timeout_s=1)).job_id
    pid_file = backend.root / job_id / "output" / "pid"
    wait_for(pid_file.exists)

    state = wait_terminal(backend, job_id, timeout=10)

    assert time.monotonic() - started < 10
    assert state.stage == "ERROR" and "timed out after 1s" in state.message
    assert not process_alive(int(pid_file.read_text()), None)


def test_resubmitting_a_run_adopts_its_job(backend: LocalJobBackend, tmp_path: Path) -> None:
    counter = tmp_path / "starts.txt"
    run = spec(hparams={"sleep": 0.3}, env={"FAKE_COUNTER": str(counter)})
    first = backend.submit(run)
    second = backend.submit(run)
    assert second.adopted is True and second.job_id == first.job_id
    wait_terminal(backend, first.job_id)
    third = backend.submit(run)  # also after completion: the run's job, never a new one

    assert third.adopted is True and third.stage == "COMPLETED"
    assert job_dirs(backend) == [first.job_id]
    assert len(counter.read_text().splitlines()) == 1


def test_concurrent_submits_of_one_run_start_one_job(backend: LocalJobBackend, tmp_path: Path) -> None:
    counter = tmp_path / "starts.txt"
    run = spec(hparams={"sleep": 0.2}, env={"FAKE_COUNTER": str(counter)})
    barrier = threading.Barrier(4)
    results: list[JobState] = []

    def submit() -> None:
        barrier.wait()
        results.append(backend.submit(run))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.adopted for r in results) == [False, True, True, True]
    assert {r.job_id for r in results} == {job_id_for("c1", "r1")}
    wait_terminal(backend, results[0].job_id)
    assert job_dirs(backend) == [job_id_for("c1", "r1")]  # no temporary dirs left behind
    assert len(counter.read_text().splitlines()) == 1


def test_a_new_backend_instance_finds_jobs_on_disk(tmp_path: Path, fake_trainer: list[str]) -> None:
    first = LocalJobBackend(tmp_path / "jobs", command=fake_trainer)
    job_id = first.submit(spec(hparams={"sleep": 0.5})).job_id
    del first  # the "Dagster process" goes away; the job keeps running

    restarted = LocalJobBackend(tmp_path / "jobs", command=fake_trainer)
    assert restarted.find("c1", "r1").stage == "RUNNING"
    state = wait_terminal(restarted, job_id)
    assert state.stage == "COMPLETED" and state.exit_code == 0
    assert restarted.find("c1", "other") is None
    assert [s.job_id for s in restarted.jobs("c1")] == [job_id] and restarted.jobs("c2") == []


def test_a_running_job_whose_process_died_becomes_error(backend: LocalJobBackend) -> None:
    job_id = backend.submit(spec(hparams={"sleep": 30})).job_id
    pid_file = backend.root / job_id / "output" / "pid"
    wait_for(pid_file.exists)
    record = read_record(backend.root / job_id)
    with (backend.root / job_id / "log.txt").open("a") as log:
        log.write("epoch 3/10 loss 0.41\n")
    # Kill everything without giving the runner a chance to record anything (like a machine crash).
    os.kill(record.runner_pid, signal.SIGKILL)
    os.killpg(record.child_pgid, signal.SIGKILL)
    wait_for(lambda: not process_alive(record.runner_pid, record.runner_marker))

    state = LocalJobBackend(backend.root).find("c1", "r1")

    assert state.stage == "ERROR" and f"pid {record.runner_pid}" in state.message
    assert "gone" in state.message
    assert "last log lines:" in state.message and "epoch 3/10 loss 0.41" in state.message  # the log tail
    assert read_record(backend.root / job_id).stage == "ERROR"  # persisted, not only reported


def test_a_job_whose_runner_never_started_becomes_error(backend: LocalJobBackend) -> None:
    job_dir = backend.root / job_id_for("c1", "r1")
    job_dir.mkdir()
    write_record(
        job_dir,
        JobRecord(
            job_id=job_dir.name,
            cycle_id="c1",
            run_id="r1",
            backend="local",
            stage="SCHEDULING",
            created_at="2020-01-01T00:00:00.000+00:00",
        ),
    )
    state = backend.find("c1", "r1")
    assert state.stage == "ERROR" and "never started" in state.message


def test_ids_are_validated_and_unambiguous(backend: LocalJobBackend) -> None:
    assert job_id_for("a--b", "c") != job_id_for("a", "b--c")
    with pytest.raises(InvalidIdError):
        backend.submit(spec(cycle_id="../escape"))
    with pytest.raises(JobBackendError):
        backend.logs_tail("../../etc")
    with pytest.raises(JobBackendError):
        backend.cancel(job_id_for("c1", "never-submitted"))
    assert backend.statuses([job_id_for("c1", "never-submitted"), "../x"]) == {}


def test_account_tokens_of_the_submitter_do_not_reach_local_jobs(
    backend: LocalJobBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf-token-of-the-submitter")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-of-the-submitter")
    state = wait_terminal(backend, backend.submit(spec(run_id="tok")).job_id)
    outputs = backend.fetch_outputs(state, tmp_path / "out")
    assert json.loads((outputs / "metrics.json").read_text())["token_seen"] is None
    for path in backend.root.rglob("*"):
        if path.is_file():
            assert "submitter" not in path.read_text(errors="replace"), path


def test_jobs_submitted_together_share_the_cores_unless_the_user_set_limits(
    backend: LocalJobBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in THREAD_LIMIT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert backend.job_env(2) == dict.fromkeys(THREAD_LIMIT_ENV, "2")
    assert backend.job_env(8) == dict.fromkeys(THREAD_LIMIT_ENV, "1")  # never zero
    state = wait_terminal(backend, backend.submit(spec(run_id="thr", env=backend.job_env(4))).job_id)
    seen = json.loads((backend.fetch_outputs(state, tmp_path / "out") / "metrics.json").read_text())["threads"]
    assert seen == dict.fromkeys(THREAD_LIMIT_ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert "OMP_NUM_THREADS" not in backend.job_env(2)


def test_a_job_gets_the_submitters_home_and_embedding_cache_as_absolute_paths(
    backend: LocalJobBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative settings resolve against the submitter's working directory, not the job's own folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KOTONE_HOME", "relative-home")
    monkeypatch.delenv("KOTONE_EMBEDDING_CACHE", raising=False)
    state = wait_terminal(backend, backend.submit(spec(run_id="home")).job_id)
    seen = json.loads((backend.fetch_outputs(state, tmp_path / "out") / "metrics.json").read_text())
    assert seen["home"] == str(tmp_path / "relative-home")
    assert seen["embedding_cache"] == str(tmp_path / "relative-home" / "cache" / "embeddings")


SLOW_WRITER = """
import pathlib, sys, time
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
(out / "pid").write_text(__import__("os").getpid().__str__())
time.sleep(5)
(out / "model").mkdir()
(out / "model" / "model.json").write_text("{}")
"""


def _gone(pid: int) -> bool:
    return process_marker(pid) is None  # no such process, or a zombie nobody reaped yet


def test_killing_the_runner_ends_its_training_command_and_no_model_appears(tmp_path: Path) -> None:
    script = tmp_path / "slow_writer.py"
    script.write_text(SLOW_WRITER)
    backend = LocalJobBackend(tmp_path / "jobs", command=[sys.executable, str(script)])
    job_id = backend.submit(spec()).job_id
    out = backend.root / job_id / "output"
    wait_for((out / "pid").exists)
    record = read_record(backend.root / job_id)
    child = int((out / "pid").read_text())
    assert record.child_pgid == child and not _gone(child)

    os.kill(record.runner_pid, signal.SIGKILL)  # the runner gets no chance to stop its group itself

    killed = time.monotonic()
    wait_for(lambda: _gone(child), timeout=3.0)  # it would live 5 s more on its own
    assert LocalJobBackend(backend.root).find("c1", "r1").stage == "ERROR"  # runner gone: recorded ERROR
    time.sleep(max(0.0, killed + 6.5 - time.monotonic()))  # past the moment it would have written its model
    assert not (out / "model").exists()


def test_train_local_writes_nothing_into_a_job_recorded_error(tmp_path: Path) -> None:
    """The writer's own check: outputs are let in under the job lock only while the job is not terminal."""
    from kotone_pipeline import train_local

    job_dir = tmp_path / "jobs" / "c1.r1"
    (job_dir / "output").mkdir(parents=True)
    write_record(
        job_dir,
        JobRecord(
            job_id="c1.r1",
            cycle_id="c1",
            run_id="r1",
            backend="local",
            stage="ERROR",
            created_at="2026-01-01T00:00:00+00:00",
            message="the job process (pid 1) is gone",
            spec={},
            command=[],
            timeout_s=60,
        ),
    )
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    from kotone_pipeline.domain.data.jsonl import write_jsonl
    from kotone_pipeline.domain.data.schemas import Pair, Vector

    pairs = [
        Pair(group_id=f"g{i}", source_type="request_text", text=f"calm piano {i}", vector=Vector.neutral())
        for i in range(8)
    ]
    for split in ("train", "validation", "test"):
        write_jsonl(dataset / f"{split}.jsonl", pairs)

    code = train_local.main(["--dataset", str(dataset), "--out", str(job_dir / "output")])

    assert code == train_local.EXIT_FAILED
    assert sorted(p.name for p in (job_dir / "output").iterdir()) == []  # no model, no metrics, no staging left
