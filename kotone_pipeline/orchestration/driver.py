"""The one driver of headless cycles, on Dagster's public interfaces.

``kotone demo`` and ``kotone cycle new --run`` start the same ``dagster dev`` that ``kotone dev`` starts
(webserver, daemon, code server; the instance under DAGSTER_HOME) and submit runs through the public
GraphQL client (``dagster-graphql``). Everything after the submission is Dagster's own: the daemon's run
queue launches the runs, its sensor daemon ticks ``training_jobs_sensor``, whose requested validation
runs are queued and launched like any sensor run. So a headless cycle leaves the same run history as one
driven from the UI: code-location origins, sensor-attributed validation runs, ticks with their cursor.

When a ``kotone dev`` already serves this instance (its daemon's heartbeat is fresh and the UI answers at
``KOTONE_DAGSTER_URL``, default http://127.0.0.1:3000), the driver submits there instead of starting a
second daemon, which would tick the same sensors twice.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from kotone_pipeline.orchestration.dagster_process import (
    code_location_loaded,
    dagster_command,
    dev_env,
    sigint_default_in_child,
)
from kotone_pipeline.services.parent_death import dies_with_parent
from kotone_pipeline.settings import load_settings

LOCATION = "kotone_pipeline"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
DEFAULT_UI_URL = "http://127.0.0.1:3000"


class RunFailedError(RuntimeError):
    def __init__(self, run: dg.DagsterRun, message: str) -> None:
        super().__init__(message)
        self.run = run


class DriverStartError(RuntimeError):
    """``dagster dev`` did not come up; the message names its log file and quotes its last lines."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDriver:
    """Context manager: a ``dagster dev`` for the life of the command (or the one already running)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        dagster_home: Path,
        log_file: Path,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 300.0,
    ) -> None:
        """``log_file``: where ``dagster dev`` and the runs it launches write their console output (the
        events themselves are in the instance, as for any run). ``env``: extra variables for it."""
        self.instance = instance
        self.dagster_home = dagster_home
        self.log_file = log_file
        self.env = dict(env or {})
        self.ready_timeout_s = ready_timeout_s
        self.url: str | None = None
        self.started_here = False
        self.note: str | None = None  # something the command should tell the user (see __enter__)
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None
        # Quiet console for the runs we submit (every event is still in the instance and the UI).
        self.run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    # --- the deployment ---------------------------------------------------------------------------
    def __enter__(self) -> DagsterDriver:
        running = load_settings().dagster_url or DEFAULT_UI_URL
        if self.daemon_running() and code_location_loaded(running):
            self.url = running
        else:
            if self.daemon_running():
                # Two daemons would tick the same sensors (their run keys keep validation single, but the
                # tick history doubles); say how to use the running one.
                self.note = (
                    f"a Dagster daemon already serves this instance, but no UI answers at {running}; "
                    "set KOTONE_DAGSTER_URL to its URL to submit there"
                )
            self._start()
        from dagster_graphql import DagsterGraphQLClient

        parts = urlsplit(self.url)
        self._client = DagsterGraphQLClient(
            parts.hostname or "127.0.0.1", port_number=parts.port, use_https=parts.scheme == "https"
        )
        return self

    def _start(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dev_env({**os.environ, **self.env}, self.dagster_home, Path.cwd())
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:  # a file, not a pipe: an unread pipe would block the server
            self._proc = subprocess.Popen(
                dagster_command("127.0.0.1", port),
                cwd=self.dagster_home,  # where the instance's dagster.yaml is (see cli/dev.py)
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as one process group, with its daemon and code server
                # Dies with this command (SIGTERM: it then stops its webserver, daemon and code server).
                preexec_fn=_stoppable_child(),
            )
        self.started_here = True
        deadline = time.monotonic() + self.ready_timeout_s
        while not code_location_loaded(self.url):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                what = "exited" if self._proc.poll() is not None else f"did not load within {self.ready_timeout_s:.0f}s"
                self._stop()
                raise DriverStartError(f"dagster dev {what}; its log is {self.log_file}:\n{self._log_tail()}")
            time.sleep(0.5)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM to the group: `dagster dev` stops its webserver, daemon and code server; runs it launched
        # have finished by now (the driver waits for them), so nothing is cut off.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()

    # --- runs ------------------------------------------------------------------------------------
    def launch(self, job_name: str, partition_key: str | None = None, tags: dict[str, str] | None = None) -> str:
        """Submit a run of ``job_name`` (for one cycle partition) through GraphQL; returns the run id."""
        assert self._client is not None, "use DagsterDriver as a context manager"
        run_tags = {**(tags or {})}
        if partition_key is not None:
            run_tags["dagster/partition"] = partition_key
        return self._client.submit_job_execution(
            job_name, repository_location_name=LOCATION, run_config=self.run_config, tags=run_tags
        )

    def daemon_running(self, fresh_s: float = 60.0) -> bool:
        """A sensor daemon (`kotone dev`, `dagster-daemon run`) sent a heartbeat within ``fresh_s``."""
        beat = self.instance.get_daemon_heartbeats().get("SENSOR")
        return beat is not None and time.time() - beat.timestamp < fresh_s

    def wait(self, run_id: str, timeout_s: float = 900, poll_s: float = 0.2) -> dg.DagsterRun:
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.instance.get_run_by_id(run_id)
            assert run is not None
            if run.status in TERMINAL:
                if run.status != dg.DagsterRunStatus.SUCCESS:
                    raise RunFailedError(run, f"{run.job_name} run {run.run_id[:8]} ended {run.status.value}")
                return run
            if time.monotonic() > deadline:
                raise RunFailedError(run, f"{run.job_name} run {run.run_id[:8]} did not end within {timeout_s:.0f}s")
            time.sleep(poll_s)

    def validation_runs(self, partition_key: str) -> list[dg.DagsterRun]:
        """Runs the sensor requested for a cycle (queued, running or done), oldest first."""
        runs = self.instance.get_runs(
            dg.RunsFilter(job_name="validation_job", tags={"dagster/partition": partition_key})
        )
        return list(reversed(list(runs)))


def _stoppable_child() -> Callable[[], None]:
    """``dagster dev`` stops on SIGTERM even when this command was started with SIGINT ignored, and gets
    SIGTERM when this command dies."""
    sigint_default, dies = sigint_default_in_child(), dies_with_parent(signal.SIGTERM)

    def preexec() -> None:
        sigint_default()
        if dies is not None:
            dies()

    return preexec
