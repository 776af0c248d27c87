"""Runs launched through the workspace's code location, as the UI and the daemon launch them.

``kotone demo`` and ``kotone cycle new --run`` use this instead of ``execute_in_process``, so their runs
carry the code location's origin (they appear on the timeline, link to their job, can be re-executed)
and validation runs come from ``training_jobs_sensor``'s own ticks (Dagster's sensor-daemon code,
evaluated here once per poll), attributed to the sensor with its tick history and cursor.
Runs are launched directly by this process (the instance's queue would wait for a daemon); each
executes in its own process with the job's in-process executor, as a UI run does.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import dagster as dg

from kotone_pipeline.compat.dagster import (
    RemoteJob,
    RemoteRepository,
    WorkspaceFileTarget,
    WorkspaceProcessContext,
    execute_sensor_iteration,
)

WORKSPACE_FILE = Path(__file__).resolve().parents[2] / "workspace.yaml"
LOCATION = "kotone_pipeline"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class RunFailedError(RuntimeError):
    def __init__(self, run: dg.DagsterRun, message: str) -> None:
        super().__init__(message)
        self.run = run


class CodeLocationLauncher:
    """Context manager: loads the workspace (one code server process) for the life of the command."""

    def __init__(
        self, instance: dg.DagsterInstance, log_file: Path | None = None, workspace_file: Path = WORKSPACE_FILE
    ) -> None:
        """``log_file``: where the code server and the run processes write their console output (the events
        themselves are in the instance, as for any run); default: this process's stdout/stderr."""
        self.instance = instance
        self.log_file = log_file
        self.workspace_file = workspace_file
        self._context: WorkspaceProcessContext | None = None
        # Quiet console for the runs we launch (every event is still in the instance and the UI).
        self.run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        self._logger = logging.getLogger("kotone.sensor")
        self._logger.setLevel(logging.WARNING)

    def __enter__(self) -> CodeLocationLauncher:
        target = WorkspaceFileTarget([str(self.workspace_file)])
        if self.log_file is None:
            self._context = WorkspaceProcessContext(self.instance, target)
        else:
            # The code server (started here) and the runs it launches inherit stdout/stderr: point them at
            # the log file while the server starts, then give this process its own back.
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            saved = os.dup(1), os.dup(2)
            with self.log_file.open("ab") as log:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                try:
                    self._context = WorkspaceProcessContext(self.instance, target)
                finally:
                    os.dup2(saved[0], 1)
                    os.dup2(saved[1], 2)
                    os.close(saved[0])
                    os.close(saved[1])
        self._context.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._context is not None:
            self._context.__exit__(kind, exc, tb)
            self._context = None

    # --- runs ------------------------------------------------------------------------------------
    def _repo(self) -> tuple[Any, Any, RemoteRepository]:
        assert self._context is not None, "use CodeLocationLauncher as a context manager"
        request = self._context.create_request_context()
        errors = request.get_code_location_error(LOCATION)
        if errors is not None:
            raise RuntimeError(f"the code location {LOCATION} does not load: {errors.message}")
        location = request.get_code_location(LOCATION)
        (repo,) = location.get_repositories().values()
        return request, location, repo

    def launch(self, job_name: str, partition_key: str | None = None, tags: dict[str, str] | None = None) -> str:
        """Create the run from the code location's job snapshot and launch it; returns the run id."""
        request, location, repo = self._repo()
        remote_job: RemoteJob = repo.get_full_job(job_name)
        run_tags = {**remote_job.tags, **(tags or {})}
        if partition_key is not None:
            run_tags["dagster/partition"] = partition_key
        plan = location.get_execution_plan(
            remote_job, self.run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=self.run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=run_tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repo.asset_graph,
        )
        self.instance.launch_run(run.run_id, request)
        return run.run_id

    def launch_queued(self) -> list[str]:
        """Launch the runs our sensor ticks queued (no daemon is running to dequeue them)."""
        request, _, _ = self._repo()
        queued = self.instance.get_runs(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED], tags={"dagster/code_location": LOCATION})
        )
        launched = []
        for run in reversed(list(queued)):  # oldest first
            if run.tags.get("dagster/sensor_name"):
                self.instance.launch_run(run.run_id, request)
                launched.append(run.run_id)
        return launched

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

    # --- sensors ---------------------------------------------------------------------------------
    def tick_sensors(self) -> None:
        """One iteration of Dagster's sensor daemon over this workspace: due sensors tick, ticks are recorded."""
        assert self._context is not None
        for _ in execute_sensor_iteration(self._context, self._logger, None, None):
            pass
