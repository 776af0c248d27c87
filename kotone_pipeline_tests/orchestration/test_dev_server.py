"""`dagster dev` starts on a free port and its GraphQL endpoint lists the assets; stopped by PID."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUERY = "{ assetNodes { assetKey { path } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.timeout(240)
def test_dagster_dev_serves_the_asset_graph(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KOTONE_HOME": str(tmp_path / "kotone"), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    env.pop("DAGSTER_HOME")  # `kotone dev` derives it from KOTONE_HOME
    kotone = Path(sys.executable).parent / "kotone"
    log_path = tmp_path / "dagster_dev.log"
    log = log_path.open("wb")  # a file, not a pipe: an unread pipe could fill up and block the server
    proc = subprocess.Popen(
        [str(kotone), "dev", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = graphql(port)
                if answer.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert proc.poll() is None, log_path.read_text(errors="replace")[-2000:]
        assert answer is not None
        keys = {"/".join(node["assetKey"]["path"]) for node in answer["data"]["assetNodes"]}
        assert {"eval_summary", "split_dataset", "promotion_decision", "trained_models", "failure_playbook"} <= keys
        assert (tmp_path / "kotone" / "dagster" / "dagster.yaml").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode is not None
