"""Local job backend (docs/design.md § Two worlds, embedded default): each run is a detached process on this machine.

Everything lives on disk under ``root/<job_id>/`` so a restarted Dagster process finds every job again:

- ``job.json``: the JobState fields, the spec (secret-looking env values redacted) and process bookkeeping;
- ``log.txt``: stdout and stderr of the job runner and of the training command;
- ``output/``: the training command's ``--out`` directory.

A job is ``python -m kotone_pipeline.services.local_job_runner <job dir>``: a small daemon, outside the
submitter's session, that starts the training command, enforces the timeout and records
RUNNING -> COMPLETED / ERROR with the exit code, so the state is right even when the submitter is gone.
POSIX only (process groups, ``fcntl`` locks, ``fork``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import kotone_pipeline
from kotone_pipeline.domain.data.jsonl import created_mode, write_json
from kotone_pipeline.services.home import HOME_ENV, kotone_home
from kotone_pipeline.services.jobs import (
    JobBackend,
    JobBackendError,
    JobSpec,
    JobState,
    validate_cycle_id,
    validate_run_id,
)

RUNNER_MODULE = "kotone_pipeline.services.local_job_runner"
TRAIN_MODULE = "kotone_pipeline.train_local"
JOB_FILE = "job.json"
LOG_FILE = "log.txt"
DEAD_JOB_LOG_LINES = 10
OUTPUT_DIR = "output"
LOCK_FILE = ".lock"

# A job dir whose runner never recorded itself within this time was orphaned mid-submission.
START_GRACE_S = 60.0
# How long cancel() waits for SIGTERM to work before SIGKILL.
CANCEL_GRACE_S = 5.0
# How long submit() waits for the runner's "I am recorded" handshake.
LAUNCH_WAIT_S = 30.0

_SECRET_KEY = re.compile(r"token|secret|passw|api_?key|credential|private", re.IGNORECASE)
# "." cannot occur in a cycle or run id, so (cycle, run) -> job id is one-to-one.
_JOB_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*\.[a-z0-9][a-z0-9_-]*$")


LOCAL_JOB_WITHHELD_ENV = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"})


def job_id_for(cycle_id: str, run_id: str) -> str:
    """Deterministic job id of a run: resubmitting the same run finds the same job."""
    return f"{validate_cycle_id(cycle_id)}.{validate_run_id(run_id)}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


class JobRecord(JobState):
    """Content of ``job.json``: the public state plus what the backend needs to manage the process."""

    spec: dict[str, Any] = {}
    command: list[str] = []
    timeout_s: int = 1800
    runner_pid: int | None = None
    runner_marker: str | None = None  # process start time: tells the runner apart from a reused pid
    child_pgid: int | None = None  # process group of the training command (its pid)

    def to_state(self, adopted: bool = False) -> JobState:
        data = self.model_dump(include=set(JobState.model_fields))
        data["adopted"] = adopted
        data["running_s"] = running_seconds(self.started_at, self.finished_at)
        return JobState(**data)


def running_seconds(started_at: str | None, finished_at: str | None) -> float | None:
    if not started_at:
        return None
    end = _parse_ts(finished_at) if finished_at else datetime.now(UTC)
    return round(max(0.0, (end - _parse_ts(started_at)).total_seconds()), 3)


def read_record(job_dir: Path) -> JobRecord:
    path = job_dir / JOB_FILE
    try:
        return JobRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise JobBackendError(f"{path}: job file not found", transient=False) from exc
    except ValidationError as exc:
        raise JobBackendError(f"{path}: unreadable job file: {exc}", transient=False) from exc


def write_record(job_dir: Path, record: JobRecord) -> None:
    write_json(job_dir / JOB_FILE, record.model_dump(mode="json", exclude={"adopted", "running_s"}))


@contextmanager
def locked(job_dir: Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write of job.json (between threads, processes and the runner)."""
    fd = os.open(job_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def process_marker(pid: int) -> str | None:
    """An identity for a live process (its start time), "" if alive but unknown, None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        stat = ""
    if stat:
        # The command name (field 2) may contain spaces and parentheses: split after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):
            return None
        return fields[19]  # field 22: start time in clock ticks after boot
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def process_alive(pid: int | None, marker: str | None) -> bool:
    if not pid:
        return False
    current = process_marker(pid)
    if current is None:
        return False
    return not (marker and current and marker != current)


def signal_group(pgid: int | None, sig: int) -> None:
    if not pgid:
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def job_dir_of_output(out: Path) -> Path | None:
    """The local job whose ``output/`` directory ``out`` is, or None (a training run outside a local job)."""
    out = Path(out).absolute()
    return out.parent if out.name == OUTPUT_DIR and (out.parent / JOB_FILE).is_file() else None


def commit_outputs(job_dir: Path, staging: Path, out: Path, runner_pid: int) -> str | None:
    """Move a training command's finished outputs from ``staging`` into ``out``, under the job lock, unless
    the job already has its terminal record (canceled, timed out, or marked ERROR because its runner died)
    or its runner is gone: nothing is written into a job after its last word. None when moved, else why not
    (the staged outputs are then deleted)."""
    with locked(job_dir):
        record = read_record(job_dir)
        if record.terminal:
            refused: str | None = f"the job is already recorded {record.stage}"
        elif os.getppid() != runner_pid:
            refused = f"its job runner (pid {runner_pid}) is gone"
        else:
            refused = None
            for entry in sorted(staging.iterdir()):
                target = out / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(entry, target)
    shutil.rmtree(staging, ignore_errors=True)
    return None if refused is None else f"outputs discarded: {refused}"


def tail_lines(path: Path, lines: int) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=max(0, lines))]
    except FileNotFoundError:
        return []


def public_spec(spec: JobSpec) -> dict[str, Any]:
    """The spec as stored on disk: env values whose names look secret never reach a file."""
    data = spec.model_dump(mode="json")
    data["env"] = {k: ("***" if _SECRET_KEY.search(k) else v) for k, v in spec.env.items()}
    return data


def _shared_state_env() -> dict[str, str]:
    """This process's home and embedding cache as absolute paths: the job runs in its own directory,
    where a default or relative ``KOTONE_HOME`` would name another (empty) cache."""
    from kotone_pipeline.domain.model.embedding_cache import EMBEDDING_CACHE_ENV, embeddings_cache_root

    return {
        HOME_ENV: str(kotone_home(create=False)),
        EMBEDDING_CACHE_ENV: str(embeddings_cache_root().expanduser().absolute()),
    }


# The thread pools numpy/scipy (OpenBLAS, MKL) and OpenMP size themselves from.
THREAD_LIMIT_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class LocalJobBackend(JobBackend):
    """Runs ``python -m kotone_pipeline.train_local --dataset URI --out DIR --hparams JSON`` per run.

    ``command`` replaces ``[python, "-m", "kotone_pipeline.train_local"]``; the ``--dataset/--out/--hparams``
    arguments are always appended. Resubmitting a run adopts its job whatever its stage: a failed run is
    retried under a new run id, never by starting a second process for the same run.
    """

    name = "local"

    def __init__(self, root: Path, python: str = sys.executable, command: list[str] | None = None) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.command = list(command) if command else None

    # -- paths ---------------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            raise JobBackendError(f"invalid local job id {job_id!r}", transient=False)
        return self.root / job_id

    def _training_command(self, spec: JobSpec, out_dir: Path) -> list[str]:
        base = self.command or [self.python, "-m", TRAIN_MODULE]
        hparams = json.dumps(spec.hparams, sort_keys=True, separators=(",", ":"))
        return [*base, "--dataset", spec.dataset.uri, "--out", str(out_dir), "--hparams", hparams]

    # -- JobBackend ----------------------------------------------------------------------------------

    def job_env(self, concurrent_jobs: int) -> dict[str, str]:
        """Split this machine's cores between jobs that run at once. Each fit's BLAS and OpenMP pools
        otherwise take every core: two jobs on two cores then took 10.3 s together against 6.7 s
        with one thread each. Limits the user set in the environment are left as they are."""
        threads = str(max(1, (os.cpu_count() or 1) // max(1, concurrent_jobs)))
        return {name: threads for name in THREAD_LIMIT_ENV if name not in os.environ}

    def submit(self, spec: JobSpec) -> JobState:
        job_id = job_id_for(spec.cycle_id, spec.run_id)
        final = self.root / job_id
        if (final / JOB_FILE).exists():
            return self._adopt(spec, job_id)
        # Build the whole job dir aside, then rename it into place: a rename onto an existing (non-empty)
        # job dir fails, so exactly one submitter wins and the others adopt its job.
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{job_id}.", suffix=".tmp", dir=self.root))
        except OSError as exc:  # a read-only or full KOTONE_HOME: say so, with the path; nothing was submitted
            raise JobBackendError(
                f"job {job_id}: cannot write under {self.root} ({exc.strerror}); nothing was submitted", transient=False
            ) from exc
        try:
            os.chmod(tmp, created_mode(directory=True))  # mkdtemp's 0o700 would stay with the job dir
            (tmp / OUTPUT_DIR).mkdir()
            (tmp / LOG_FILE).touch()
            record = JobRecord(
                job_id=job_id,
                cycle_id=spec.cycle_id,
                run_id=spec.run_id,
                backend=self.name,
                stage="SCHEDULING",
                created_at=utc_now(),
                cost_usd=0.0,
                url=final.as_uri(),
                output_uri=str(final / OUTPUT_DIR),
                spec=public_spec(spec),
                command=self._training_command(spec, final / OUTPUT_DIR),
                timeout_s=spec.timeout_s,
            )
            write_record(tmp, record)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    return self._adopt(spec, job_id)
                raise JobBackendError(f"cannot create job directory {final}: {exc}", transient=False) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._launch(final, spec)
        state = self._load(job_id)
        assert state is not None  # the job dir was just created by us
        return state.to_state()

    def find(self, cycle_id: str, run_id: str) -> JobState | None:
        record = self._load(job_id_for(cycle_id, run_id))
        return record.to_state() if record else None

    def statuses(self, job_ids: list[str]) -> dict[str, JobState]:
        """States of the given jobs; ids with no job under this root are left out of the answer."""
        found: dict[str, JobState] = {}
        for job_id in job_ids:
            if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
                continue
            record = self._load(job_id)
            if record is not None:
                found[job_id] = record.to_state()
        return found

    def jobs(self, cycle_id: str | None = None) -> list[JobState]:
        """Every job under this root (of one cycle when given), oldest first."""
        states = [
            record.to_state()
            for path in sorted(self.root.iterdir())
            if _JOB_ID.match(path.name)
            and (cycle_id is None or path.name.startswith(f"{cycle_id}."))
            and (record := self._load(path.name)) is not None
        ]
        return sorted(states, key=lambda s: s.created_at or "")

    def cancel(self, job_id: str) -> None:
        """Mark CANCELED, then stop the training process group (SIGTERM, SIGKILL after a grace period)."""
        job_dir = self._existing_dir(job_id)
        with locked(job_dir):
            record = read_record(job_dir)
            if record.terminal:
                return
            record.stage = "CANCELED"
            record.finished_at = utc_now()
            record.message = "canceled"
            write_record(job_dir, record)
        # The runner starts the training command under the same lock, so either it saw CANCELED and
        # started nothing, or child_pgid is recorded here.
        if not process_alive(record.runner_pid, record.runner_marker):
            return  # nothing of ours left to stop (and a dead runner's group id may already be reused)
        signal_group(record.child_pgid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline and process_alive(record.runner_pid, record.runner_marker):
            time.sleep(0.02)
        if process_alive(record.runner_pid, record.runner_marker):
            signal_group(record.child_pgid, signal.SIGKILL)
            with suppress(ProcessLookupError):
                os.kill(record.runner_pid, signal.SIGKILL)  # type: ignore[arg-type]

    def logs_tail(self, job_id: str, lines: int = 50) -> str:
        return "\n".join(tail_lines(self._existing_dir(job_id) / LOG_FILE, lines))

    def fetch_outputs(self, state: JobState, dest: Path) -> Path:
        """Copy the run's output directory into ``dest`` (or return it when ``dest`` is that directory)."""
        out = self._existing_dir(state.job_id) / OUTPUT_DIR
        if not out.is_dir():
            raise JobBackendError(f"job {state.job_id} has no output directory {out}", transient=False)
        dest = Path(dest).absolute()
        if dest == out:
            return out
        shutil.copytree(out, dest, dirs_exist_ok=True)
        return dest

    # -- internals -----------------------------------------------------------------------------------

    def _existing_dir(self, job_id: str) -> Path:
        job_dir = self.job_dir(job_id)
        if not (job_dir / JOB_FILE).exists():
            raise JobBackendError(f"no local job {job_id!r} under {self.root}", transient=False)
        return job_dir

    def _adopt(self, spec: JobSpec, job_id: str) -> JobState:
        record = self._load(job_id)
        if record is None:
            raise JobBackendError(f"job {job_id} vanished while being adopted", transient=True)
        if (record.cycle_id, record.run_id) != (spec.cycle_id, spec.run_id):
            raise JobBackendError(
                f"job {job_id} belongs to cycle {record.cycle_id!r} run {record.run_id!r}", transient=False
            )
        return record.to_state(adopted=True)

    def _launch(self, job_dir: Path, spec: JobSpec) -> None:
        # The local trainer needs no account; keep tokens out of its environment entirely.
        env = {k: v for k, v in os.environ.items() if k not in LOCAL_JOB_WITHHELD_ENV}
        env.update({**spec.env, "PYTHONUNBUFFERED": "1"})
        env.update(_shared_state_env())
        # Works from a source checkout too, and whatever the caller's working directory is.
        package_parent = str(Path(kotone_pipeline.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
        try:
            with (job_dir / LOG_FILE).open("ab") as log:
                launcher = subprocess.Popen(
                    [sys.executable, "-m", RUNNER_MODULE, str(job_dir)],
                    cwd=job_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            with locked(job_dir):
                record = read_record(job_dir)
                record.stage, record.finished_at = "ERROR", utc_now()
                record.message = f"cannot start the job runner: {exc}"
                write_record(job_dir, record)
            raise JobBackendError(f"job {job_dir.name}: {record.message}", transient=False) from exc
        # The launcher forks the daemon and exits as soon as the daemon has recorded itself in job.json.
        # If it is slow, move on: the START_GRACE_S check catches a runner that never records itself.
        with suppress(subprocess.TimeoutExpired):
            launcher.wait(timeout=LAUNCH_WAIT_S)

    def _load(self, job_id: str) -> JobRecord | None:
        """Read a job from disk; a non-terminal job whose process is gone becomes ERROR (persisted)."""
        job_dir = self.root / job_id
        if not (job_dir / JOB_FILE).exists():
            return None
        record = read_record(job_dir)
        if record.terminal or _stale_reason(record) is None:
            return record
        with locked(job_dir):
            record = read_record(job_dir)  # the runner may have finished since the first read
            reason = None if record.terminal else _stale_reason(record)
            if reason is not None:
                tail = tail_lines(job_dir / LOG_FILE, DEAD_JOB_LOG_LINES)
                if tail:  # the report shows why it died (an OOM kill, a traceback) without opening the file
                    reason += "; last log lines:\n" + "\n".join(tail)
                record.stage, record.message = "ERROR", reason
                record.finished_at = record.finished_at or utc_now()
                write_record(job_dir, record)
        return record


def _stale_reason(record: JobRecord) -> str | None:
    if record.runner_pid is None:
        created = _parse_ts(record.created_at) if record.created_at else None
        if created is not None and (datetime.now(UTC) - created).total_seconds() < START_GRACE_S:
            return None
        return "the job process never started (the submitter probably exited during submission); use a new run id"
    if process_alive(record.runner_pid, record.runner_marker):
        return None
    return (
        f"the job process (pid {record.runner_pid}) is gone without recording an exit status "
        "(killed, or the machine restarted); see log.txt"
    )
