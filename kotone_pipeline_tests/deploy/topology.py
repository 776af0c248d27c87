"""The deployment's topology as separate processes on this machine, the way the pods run it.

A throwaway PostgreSQL cluster (``kotone_pipeline_tests.pg``), ``dagster code-server start`` as its own
process, ``dagster-daemon run`` and ``dagster-webserver``, sharing the instance from ``deploy/dagster.yaml``
(the queue and its limits) and one KOTONE_HOME. No Kubernetes here, so runs use the instance's default run
launcher: the code server starts each run as a process, as in the compose deployment. Used by the slow
deployment test and by ``benchmarks/bench_deploy.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from kotone_pipeline_tests import pg
from kotone_pipeline_tests.dev_server import free_port, graphql

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "kotone_pipeline"
REPOSITORY = "__repository__"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def instance_yaml(cycle_limit: int | None = None, monitoring_s: int | None = None) -> str:
    """deploy/dagster.yaml, with the cycle-run limit changed when asked (a test that makes it bind), and
    run monitoring's poll and slot-freeing delay shortened when asked (the same rule, seconds not minutes)."""
    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text(encoding="utf-8"))
    if cycle_limit is not None:
        for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]:
            limit["limit"] = cycle_limit
    if monitoring_s is not None:
        config["run_monitoring"]["poll_interval_seconds"] = monitoring_s
        config["run_monitoring"]["free_slots_after_run_end_seconds"] = monitoring_s
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Service:
    name: str
    command: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""


@dataclass
class Deployment:
    home: Path
    dagster_home: Path
    env: dict[str, str]
    web_port: int
    code_port: int
    services: dict[str, Service] = field(default_factory=dict)

    # --- processes -------------------------------------------------------------------------------
    def start(self, name: str) -> None:
        service = self.services[name]
        log = service.log_path.open("ab")
        try:
            service.proc = subprocess.Popen(
                service.command,
                cwd=self.dagster_home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped (or killed) with its children
            )
        finally:
            log.close()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
        proc = self.services[name].proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def kill_daemon(self) -> None:
        """``kill -9`` of the daemon and everything it started: no shutdown code runs."""
        self.stop("daemon", signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log()[-3000:]}" for s in self.services.values())

    # --- state -----------------------------------------------------------------------------------
    def instance(self) -> dg.DagsterInstance:
        """An instance of this process on the deployment's DAGSTER_HOME (reads the DAGSTER_PG_* it set)."""
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.web_port, query, variables)

    def wait_ready(self, timeout_s: float = 240) -> None:
        """The webserver answers with the code location loaded, and the daemon's loops have a heartbeat."""
        deadline = time.monotonic() + timeout_s
        loaded = False
        while time.monotonic() < deadline:
            for service in self.services.values():
                assert service.proc is not None and service.proc.poll() is None, f"{service.name} exited\n{self.logs()}"
            if not loaded:
                try:
                    entries = self.graphql(LOCATION_QUERY)["data"]["workspaceOrError"]["locationEntries"]
                    loaded = bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)
                except OSError:
                    pass
            if loaded and self.daemon_alive():
                return
            time.sleep(0.5)
        raise AssertionError(f"the deployment did not get ready in {timeout_s:.0f}s\n{self.logs()}")

    def daemon_alive(self, since: float = 0.0) -> bool:
        with self.instance() as instance:
            beats = instance.get_daemon_heartbeats()
        wanted = ("SENSOR", "QUEUED_RUN_COORDINATOR")
        return all(name in beats and beats[name].timestamp > since for name in wanted)

    def wait_runs(self, run_ids: list[str], timeout_s: float = 900) -> list[dg.DagsterRun]:
        deadline = time.monotonic() + timeout_s
        with self.instance() as instance:
            while True:
                runs = [instance.get_run_by_id(r) for r in run_ids]
                if all(r is not None and r.status in TERMINAL for r in runs):
                    return [r for r in runs if r is not None]
                if time.monotonic() > deadline:
                    states = {r.run_id[:8]: r.status.value for r in runs if r is not None}
                    raise AssertionError(f"runs did not end in {timeout_s:.0f}s: {states}\n{self.logs()}")
                time.sleep(0.5)


def _env(base: Mapping[str, str], cluster: pg.PgCluster, home: Path, dagster_home: Path, extra: Mapping[str, str]):
    env = {
        **base,
        **cluster.env(),
        "KOTONE_DAGSTER_STORAGE": "postgres",
        "DAGSTER_HOME": str(dagster_home),
        "KOTONE_HOME": str(home),
        "KOTONE_SENSOR_INTERVAL_S": "1",
        # The worktree's code, whatever the environment has installed.
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [base.get("PYTHONPATH")])]),
        "PYTHONWARNINGS": "ignore",
        **extra,
    }
    return {k: v for k, v in env.items() if v is not None}


@contextmanager
def deployment(
    root: Path,
    extra_env: Mapping[str, str] | None = None,
    cycle_limit: int | None = None,
    monitoring_s: int | None = None,
) -> Iterator[Deployment]:
    """Start PostgreSQL, the code server, the daemon and the webserver; stop them all on exit.

    The variables the services get are also set in this process while it lasts (``instance()`` reads them)."""
    home, dagster_home, logs = root / "kotone", root / "dagster_home", root / "logs"
    for path in (home, dagster_home, logs):
        path.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        cluster = stack.enter_context(pg.throwaway_cluster())
        env = _env(os.environ, cluster, home, dagster_home, extra_env or {})
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        stack.callback(_restore, saved)
        code_port, web_port = free_port(), free_port()
        (dagster_home / "dagster.yaml").write_text(instance_yaml(cycle_limit, monitoring_s), encoding="utf-8")
        workspace = {
            "load_from": [{"grpc_server": {"host": "127.0.0.1", "port": code_port, "location_name": LOCATION}}]
        }
        (dagster_home / "workspace.yaml").write_text(yaml.safe_dump(workspace), encoding="utf-8")
        dep = Deployment(home, dagster_home, env, web_port, code_port)
        code_server = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(code_port)]
        commands = {
            "code-server": [*code_server, "-m", "kotone_pipeline.definitions", "-a", "defs"],
            "daemon": [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            "webserver": [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
                "-w",
                "workspace.yaml",
            ],
        }
        for name, command in commands.items():
            dep.services[name] = Service(name, command, logs / f"{name}.log")
        for name in commands:
            stack.callback(dep.stop, name)  # LIFO: webserver, daemon, then the code server stop first
        dep.start("code-server")
        _wait_grpc(dep)
        dep.start("daemon")
        dep.start("webserver")
        dep.wait_ready()
        yield dep


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _wait_grpc(dep: Deployment, timeout_s: float = 180) -> None:
    """The code server answers its health check (the daemon and webserver then load it at once)."""
    deadline = time.monotonic() + timeout_s
    check = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(dep.code_port), "-h", "127.0.0.1"]
    while time.monotonic() < deadline:
        proc = dep.services["code-server"].proc
        assert proc is not None and proc.poll() is None, dep.logs()
        if subprocess.run(check, env=dep.env, capture_output=True, timeout=60).returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"the code server did not answer in {timeout_s:.0f}s\n{dep.logs()}")
