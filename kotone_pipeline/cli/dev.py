"""``kotone dev``: the Dagster UI and daemon (``dagster dev``), with Kotone's instance and paths.

The command *becomes* ``dagster dev`` (exec): no Python process stays behind only to wait for it. A tiny
watcher (``python -I``, stdlib only) prints the URL once the UI answers and its code location has loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import typer

from kotone_pipeline.cli._common import fail, handle_errors

REPO_ROOT = Path(__file__).resolve().parents[2]
# Variables holding paths: made absolute, because Dagster runs from DAGSTER_HOME (see dev_env).
PATH_VARIABLES = ("KOTONE_HOME", "KOTONE_DATA_DIR", "KOTONE_EMBEDDING_CACHE", "KOTONE_HF_TRAINING_SCRIPT")
# `dagster dev` says it is superseded by `dg dev`, which needs a dg project layout Kotone does not use;
# nothing a user of `kotone dev` can act on. Matched on the message only, so other warnings still show.
QUIET_WARNINGS = "ignore:Function `dev_command` is superseded:Warning"
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


def dev_env(environ: Mapping[str, str], dagster_home: Path, cwd: Path) -> dict[str, str]:
    """The environment of ``dagster dev``: DAGSTER_HOME set, relative paths resolved against ``cwd``."""
    env = {**environ, "DAGSTER_HOME": str(dagster_home)}
    from kotone_pipeline.services.home import kotone_home

    env["KOTONE_HOME"] = str(kotone_home())  # the default (./.kotone) is relative to where kotone ran
    for name in PATH_VARIABLES:
        value = env.get(name, "").strip()
        if value and not Path(value).expanduser().is_absolute():
            env[name] = str((cwd / Path(value).expanduser()).absolute())
    warnings = env.get("PYTHONWARNINGS", "")
    env["PYTHONWARNINGS"] = f"{warnings},{QUIET_WARNINGS}" if warnings else QUIET_WARNINGS
    return env


def dagster_command(host: str, port: int) -> list[str]:
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which("dagster")
    if dagster is None:
        raise fail("the dagster command is not installed in this environment")
    workspace = REPO_ROOT / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.is_file() else ["-m", "kotone_pipeline.definitions"]
    return [dagster, "dev", *target, "-h", host, "-p", str(port)]


@handle_errors
def dev(
    port: int = typer.Option(3000, help="Port of the Dagster UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0: every interface)."),
) -> None:
    """Start the Dagster UI and daemon (dagster dev) with DAGSTER_HOME under KOTONE_HOME; prints the URL when ready."""
    from kotone_pipeline.orchestration.runner import dagster_home

    home = dagster_home()
    command = dagster_command(host, port)
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
    os.execve(command[0], command, env)


def register(app: typer.Typer) -> None:
    app.command("dev")(dev)
