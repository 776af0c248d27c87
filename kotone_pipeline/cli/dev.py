"""``kotone dev``: the Dagster UI and daemon (``dagster dev``), with Kotone's instance and paths.

The command *becomes* ``dagster dev`` (exec): no Python process stays behind only to wait for it. A tiny
watcher (``python -I``, stdlib only) prints the URL once the UI answers and its code location has loaded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from kotone_pipeline.cli._common import fail, handle_errors
from kotone_pipeline.orchestration.dagster_process import QUIET_WARNINGS, dagster_command, dev_env

__all__ = ["QUIET_WARNINGS", "dev", "dev_env", "register"]

READY_TIMEOUT_S = 300.0

# Runs in a fresh `python -I`: forks away (so dagster, which replaces our process, need not reap it),
# then polls the UI until its code locations have loaded, and says so once.
WATCHER = r"""
import json, os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if os.fork():
    os._exit(0)
query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"})
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(0)
    try:
        request = urllib.request.Request(
            "http://127.0.0.1:" + url.rsplit(":", 1)[1] + "/graphql",
            data=query.encode(), headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            print(f"\nKotone: the Dagster UI is ready on {url}\n", file=sys.stderr, flush=True)
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
print(f"Kotone: the Dagster UI did not answer on {url} within {timeout:.0f}s", file=sys.stderr, flush=True)
"""


@handle_errors
def dev(
    port: int = typer.Option(3000, help="Port of the Dagster UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0: every interface)."),
) -> None:
    """Start the Dagster UI and daemon (dagster dev) with DAGSTER_HOME under KOTONE_HOME; prints the URL when ready."""
    from kotone_pipeline.orchestration.runner import dagster_home

    home = dagster_home()
    try:
        command = dagster_command(host, port)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    # Run from DAGSTER_HOME: that is where the instance's dagster.yaml is (Dagster warns about any
    # dagster.yaml in the working folder that is not DAGSTER_HOME's, such as the repository's template).
    env = dev_env(os.environ, home, Path.cwd())
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    typer.echo(f"Starting the Dagster UI (DAGSTER_HOME={home}); it will be on {url}", err=True)
    watcher = subprocess.Popen(
        [sys.executable, "-I", "-c", WATCHER, url, str(os.getpid()), str(READY_TIMEOUT_S)], stdin=subprocess.DEVNULL
    )
    watcher.wait()  # it forked away at once; the grandchild watches
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(home)
    # dagster dev stops on SIGTERM only when SIGINT is not ignored (see sigint_default_in_child).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(command[0], command, env)


def register(app: typer.Typer) -> None:
    app.command("dev")(dev)
