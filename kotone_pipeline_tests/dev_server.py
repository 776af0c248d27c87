"""`kotone dev` started by a test: a free port, output in a file, stopped by its process group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KOTONE = Path(sys.executable).parent / "kotone"
READY_LINE = "Kotone: the Dagster UI is ready on "


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, variables: Mapping[str, object] | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": dict(variables or {})}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class DevServer:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def kotone_dev(
    home: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    ready_s: float = 180,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[DevServer]:
    """Start `kotone dev` for KOTONE_HOME=home and wait for its "ready" line (the UI answers, code loaded);
    stopped afterwards unless the test stopped it."""
    port = free_port()
    run_env = {**os.environ, "KOTONE_HOME": str(home), **(env or {})}
    run_env.pop("DAGSTER_HOME", None)  # `kotone dev` derives it from KOTONE_HOME
    log = log_path.open("wb")  # a file, not a pipe: an unread pipe could fill up and block the server
    proc = subprocess.Popen(
        [str(KOTONE), "dev", "--port", str(port)],
        cwd=REPO,
        env=run_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    server = DevServer(proc, port, log_path)
    try:
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline and proc.poll() is None and READY_LINE not in server.log():
            time.sleep(0.5)
        assert proc.poll() is None, server.log()[-3000:]
        assert READY_LINE in server.log(), server.log()[-3000:]
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass  # the test stopped it, and its whole group is gone
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
