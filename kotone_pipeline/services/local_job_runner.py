"""The process behind one local job: ``python -m kotone_pipeline.services.local_job_runner <job dir>``.

Started by ``LocalJobBackend.submit`` in a new session. It forks a daemon and exits once the daemon has
recorded itself, so the submitter never keeps a child around and the job outlives it. The daemon runs
the training command stored in job.json in its own process group, kills it after ``timeout_s``, and
records the outcome (stage, exit code, timestamps, message) in job.json under the job lock. The command
dies with the daemon (SIGTERM: the daemon stops its group; SIGKILL: the kernel, by PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from kotone_pipeline.services.local_jobs import (
    LOG_FILE,
    locked,
    process_marker,
    read_record,
    signal_group,
    tail_lines,
    utc_now,
    write_record,
)
from kotone_pipeline.services.parent_death import dies_with_parent

KILL_GRACE_S = 5.0
_MESSAGE_MAX = 300


def _say(text: str) -> None:
    print(f"[kotone-runner {utc_now()}] {text}", file=sys.stderr, flush=True)


def _failure_message(job_dir: Path, exit_code: int) -> str:
    if exit_code < 0:
        try:
            cause = f"killed by signal {signal.Signals(-exit_code).name}"
        except ValueError:
            cause = f"killed by signal {-exit_code}"
    else:
        cause = f"exited with code {exit_code}"
    log = tail_lines(job_dir / LOG_FILE, 20)
    last = [line for line in log if line.strip() and "[kotone-runner" not in line]
    detail = f": {last[-1].strip()}" if last else ""
    return f"training command {cause}{detail}"[:_MESSAGE_MAX]


def run_daemon(job_dir: Path, ready_fd: int | None = None) -> int:
    """Start the training command, wait for it (bounded by the timeout), record the outcome."""

    def ready() -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
            ready_fd = None

    with locked(job_dir):
        record = read_record(job_dir)
        if record.terminal:  # canceled before it could start
            ready()
            return 0
        record.stage, record.started_at, record.message = "RUNNING", utc_now(), None
        record.runner_pid, record.runner_marker = os.getpid(), process_marker(os.getpid())
        try:
            # Own process group, so a timeout or cancel stops the command and everything it spawned.
            child = subprocess.Popen(
                record.command,
                cwd=job_dir,
                stdin=subprocess.DEVNULL,
                process_group=0,
                # SIGKILL when the runner dies, so a killed runner leaves no command writing into its job (elsewhere
                # than Linux, train_local watches its parent). Safe: the runner has no threads at this point.
                preexec_fn=dies_with_parent(signal.SIGKILL),
            )
        except OSError as exc:
            record.stage, record.finished_at = "ERROR", utc_now()
            record.message = f"cannot start the training command {record.command[:1]}: {exc}"
            write_record(job_dir, record)
            _say(record.message)
            ready()
            return 1
        record.child_pgid = child.pid
        write_record(job_dir, record)
    ready()
    _say(f"started pid {child.pid} (timeout {record.timeout_s}s): {' '.join(record.command)}")

    # Someone stopping the runner stops the training command as well.
    signal.signal(signal.SIGTERM, lambda *_: signal_group(child.pid, signal.SIGTERM))

    timed_out = False
    try:
        exit_code = child.wait(timeout=record.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _say(f"timed out after {record.timeout_s}s: stopping the training command")
        signal_group(child.pid, signal.SIGTERM)
        try:
            exit_code = child.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            signal_group(child.pid, signal.SIGKILL)
            exit_code = child.wait()
    # Leave no orphans of the command behind (the group id cannot be reused while members remain).
    signal_group(child.pid, signal.SIGKILL)
    _say(f"training command finished with exit code {exit_code}")

    with locked(job_dir):
        record = read_record(job_dir)
        record.exit_code = exit_code
        record.finished_at = record.finished_at or utc_now()
        if not record.terminal:  # a cancel keeps its CANCELED stage
            if timed_out:
                record.stage = "ERROR"
                record.message = f"timed out after {record.timeout_s}s; the training command was killed"
            elif exit_code == 0:
                record.stage, record.message = "COMPLETED", None
            else:
                record.stage, record.message = "ERROR", _failure_message(job_dir, exit_code)
        write_record(job_dir, record)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kotone_pipeline.services.local_job_runner <job dir>", file=sys.stderr)
        return 2
    job_dir = Path(args[0]).absolute()
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        # Launcher: return to the submitter once the daemon has recorded itself (or died trying).
        os.close(write_fd)
        os.read(read_fd, 1)
        return 0
    os.close(read_fd)
    try:
        return run_daemon(job_dir, ready_fd=write_fd)
    except Exception as exc:  # record anything unexpected instead of leaving the job RUNNING
        _say(f"runner failed: {exc!r}")
        with locked(job_dir):
            record = read_record(job_dir)
            if not record.terminal:
                record.stage, record.finished_at = "ERROR", utc_now()
                record.message = f"job runner failed: {exc}"[:_MESSAGE_MAX]
                write_record(job_dir, record)
        return 1


if __name__ == "__main__":
    sys.exit(main())
