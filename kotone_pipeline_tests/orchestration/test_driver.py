"""The driver of headless cycles: the dagster dev it starts says why when it cannot start, and never
outlives the command that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.orchestration.driver import DagsterDriver, DriverStartError

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie has ended; only its parent has not read its status yet.
    return not (stat.is_file() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_a_dagster_dev_that_cannot_start_is_named_with_its_log(tmp_path: Path) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_queue:\n  no_such_setting: 1\n", encoding="utf-8")
    log = tmp_path / "runs.log"
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(DriverStartError) as failed, DagsterDriver(instance, home, log_file=log, ready_timeout_s=120):
        pass
    message = str(failed.value)
    assert "dagster dev exited" in message and str(log) in message
    assert "no_such_setting" in message  # the log's last lines say what is wrong


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_dagster_dev_of_a_killed_command_stops_with_it(tmp_path: Path) -> None:
    """`kotone demo` killed with SIGKILL (a CI timeout, an OOM kill) leaves no webserver or daemon behind."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        import dagster as dg
        from kotone_pipeline.orchestration.driver import DagsterDriver
        home = Path({str(tmp_path / "dagster")!r})
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\\n  enabled: false\\n")
        instance = dg.DagsterInstance.from_config(str(home))
        with DagsterDriver(instance, home, log_file=home / "runs.log") as driver:
            print(driver._proc.pid, flush=True)
            time.sleep(600)
        """
    )
    env = {**os.environ, "KOTONE_HOME": str(tmp_path / "kotone"), "PYTHONPATH": str(REPO)}
    env.pop("DAGSTER_HOME", None)
    command = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = command.stdout.readline() if command.stdout else ""
        assert line.strip().isdigit(), f"the driver did not start (exit {command.poll()})"
        dagster_dev = int(line)
        assert _alive(dagster_dev)
        command.send_signal(signal.SIGKILL)
        command.wait()
        deadline = time.monotonic() + 60
        while _alive(dagster_dev) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(dagster_dev), "dagster dev outlived the command that started it"
        # Its daemon and webserver went with it: nothing is left in its process group.
        deadline = time.monotonic() + 60
        left: list[int] = []
        while time.monotonic() < deadline:
            left = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _in_group(p, dagster_dev)]
            if not left:
                break
            time.sleep(0.5)
        assert left == []
    finally:
        command.kill()
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.killpg(dagster_dev, signal.SIGKILL)


def _in_group(proc: Path, pgid: int) -> bool:
    try:
        return os.getpgid(int(proc.name)) == pgid and _alive(int(proc.name))
    except (ProcessLookupError, PermissionError):
        return False
