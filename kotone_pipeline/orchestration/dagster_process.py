"""How Kotone starts ``dagster dev`` (``kotone dev``, and the driver of headless cycles), without importing Dagster.

Kept apart from the driver so that ``kotone dev`` and ``kotone --help`` do not pay for importing Dagster.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from kotone_pipeline.services.home import kotone_home

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE_FILE = REPO_ROOT / "workspace.yaml"
# Variables holding paths: made absolute, because Dagster runs from DAGSTER_HOME (see dev_env).
PATH_VARIABLES = ("KOTONE_HOME", "KOTONE_DATA_DIR", "KOTONE_EMBEDDING_CACHE", "KOTONE_HF_TRAINING_SCRIPT")
# `dagster dev` says it is superseded by `dg dev`, which needs a dg project layout Kotone does not use;
# nothing a user of `kotone dev` can act on. Matched on the message only, so other warnings still show.
QUIET_WARNINGS = "ignore:Function `dev_command` is superseded:Warning"
LOCATIONS_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def dev_env(environ: Mapping[str, str], dagster_home: Path, cwd: Path) -> dict[str, str]:
    """The environment of ``dagster dev``: DAGSTER_HOME set, relative paths resolved against ``cwd``."""
    env = {**environ, "DAGSTER_HOME": str(dagster_home)}
    env["KOTONE_HOME"] = str(kotone_home())  # the default (./.kotone) is relative to where kotone ran
    for name in PATH_VARIABLES:
        value = env.get(name, "").strip()
        if value and not Path(value).expanduser().is_absolute():
            env[name] = str((cwd / Path(value).expanduser()).absolute())
    warnings = env.get("PYTHONWARNINGS", "")
    env["PYTHONWARNINGS"] = f"{warnings},{QUIET_WARNINGS}" if warnings else QUIET_WARNINGS
    return env


def dagster_command(host: str, port: int) -> list[str]:
    """``dagster dev`` on this workspace; raises FileNotFoundError when the command is not installed."""
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which("dagster")
    if dagster is None:
        raise FileNotFoundError("the dagster command is not installed in this environment")
    target = ["-w", str(WORKSPACE_FILE)] if WORKSPACE_FILE.is_file() else ["-m", "kotone_pipeline.definitions"]
    return [dagster, "dev", *target, "-h", host, "-p", str(port)]


def code_location_loaded(url: str, timeout_s: float = 5.0) -> bool:
    """The UI at ``url`` answers GraphQL and every code location in its workspace has loaded."""
    request = urllib.request.Request(
        url.rstrip("/") + "/graphql",
        data=json.dumps({"query": LOCATIONS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, ValueError, KeyError, TypeError):  # not up yet, or not a Dagster UI
        return False
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def sigint_default_in_child() -> Callable[[], None]:
    """For Popen's ``preexec_fn`` (with ``kotone dev``'s exec, see ``cli/dev.py``): SIGINT back to its default
    action in the child.

    ``dagster dev`` maps SIGTERM onto SIGINT's handler (so that Kubernetes can stop it). A shell without job
    control starts ``cmd &`` with SIGINT ignored, and an ignored signal stays ignored across exec: ``dagster
    dev`` then ignored SIGTERM too, and neither ``kill`` nor our own parent-death signal could stop it."""
    import ctypes

    libc_signal = ctypes.CDLL(None, use_errno=True).signal  # looked up before the fork, as in parent_death.py
    sig_dfl = 0

    def preexec() -> None:
        libc_signal(signal.SIGINT, sig_dfl)

    return preexec
