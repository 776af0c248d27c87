"""`kotone dev` and the `dagster dev` a headless command starts stop on SIGTERM, also when they were started
with SIGINT ignored (what a shell without job control does to `kotone dev &`): dagster dev maps SIGTERM onto
SIGINT's handler, so an inherited SIG_IGN made `kill` do nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kotone_pipeline.orchestration.dagster_process import sigint_default_in_child
from kotone_pipeline_tests.dev_server import kotone_dev

SHOW_SIGINT = "import signal; print(signal.getsignal(signal.SIGINT))"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _sigint_in_child(preexec: object) -> str:
    return subprocess.run(
        [sys.executable, "-c", SHOW_SIGINT], preexec_fn=preexec, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_child_gets_sigints_default_back_though_its_parent_ignores_it() -> None:
    assert _sigint_in_child(_ignore_sigint) in ("1", "Handlers.SIG_IGN")  # SIG_IGN: what dagster dev inherited

    default = sigint_default_in_child()

    def ignored_then_restored() -> None:
        _ignore_sigint()
        default()

    assert _sigint_in_child(ignored_then_restored) == "<built-in function default_int_handler>"


@pytest.mark.slow
def test_kotone_dev_started_with_sigint_ignored_stops_on_sigterm(tmp_path: Path) -> None:
    with kotone_dev(tmp_path / "home", tmp_path / "dev.log", preexec_fn=_ignore_sigint) as server:
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # what `kill PID` sends
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"kotone dev ignored SIGTERM for 30 s:\n{server.log()[-2000:]}")
        stopped_s = time.monotonic() - started
        assert "Shutting down Dagster services" in server.log()
        assert stopped_s < 20, stopped_s
