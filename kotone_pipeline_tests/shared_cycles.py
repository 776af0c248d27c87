"""Two finished local cycles, run once per test session and read by every module that needs them.

A real cycle through Dagster (base assets, cycle job, local training jobs in subprocesses, the sensor,
validation and the gate) is the most expensive thing the suite does; modules that only read what
cycles left behind share one run of ``c1`` and ``c2`` (``kotone_pipeline_tests/conftest.py`` holds the
``finished_cycles`` fixture). The configuration is the default one (two runs per cycle) with offline
W&B, so each reader sees what a real local cycle writes.

Readers never change the shared home: a test that goes on from it (another cycle, a rollback, a server
with a daemon) works on ``copy_home(...)``, a copy of the folder; the copy's documents still point at
the shared home's models and datasets (absolute paths), which nobody changes. The session ends by
checking that no file outside the Dagster storage and W&B's folder was added, removed or changed.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import dagster as dg

    from kotone_pipeline.orchestration.runner import CycleReport

CYCLES = ("c1", "c2")
# The shared cycles' settings besides KOTONE_HOME: the defaults, with offline W&B runs (test_cycle_end_to_end
# reads them back); a test going on from a copy sets what it needs on top.
ENV = {"KOTONE_WANDB_MODE": "offline"}


@contextmanager
def home_env(home: Path, extra: dict[str, str] | None = None) -> Iterator[None]:
    """KOTONE_HOME set to ``home`` and DAGSTER_HOME unset, so the instance is the one under the home."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"KOTONE_HOME": str(home), **ENV, **(extra or {})}.items():
            patch.setenv(key, value)
        patch.delenv("DAGSTER_HOME", raising=False)
        yield


@contextmanager
def open_home_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The persistent Dagster instance under ``home`` (what ``kotone dev`` and the CLI open)."""
    from kotone_pipeline.orchestration.runner import open_instance

    with home_env(home):
        instance = open_instance(home)
    try:
        yield instance
    finally:
        instance.dispose()


def fingerprint(home: Path) -> dict[str, str]:
    """Every file under ``home`` with a hash, but the Dagster storage (opening an instance touches it) and W&B's
    folder (its service process tidies staging files and logs after the runs end)."""
    return {
        str(path.relative_to(home)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(home.rglob("*"))
        if path.is_file() and path.relative_to(home).parts[0] not in ("dagster", "wandb")
    }


@dataclass(frozen=True)
class FinishedCycles:
    """``c1`` and ``c2`` run by CycleRunner into ``home`` (persistent instance under ``home/dagster``)."""

    home: Path
    reports: dict[str, CycleReport]

    @property
    def env(self) -> dict[str, str]:
        return {"KOTONE_HOME": str(self.home), **ENV}

    def copy_home(self, dest: Path) -> Path:
        """A copy of the finished home at ``dest`` (a path that does not exist yet) to go on from."""
        shutil.copytree(self.home, dest, symlinks=True)
        return dest


def run_finished_cycles(home: Path) -> FinishedCycles:
    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.runner import CycleRunner

    home.mkdir(parents=True, exist_ok=True)
    with open_home_instance(home) as instance, home_env(home):
        runner = CycleRunner(build_definitions({"KOTONE_HOME": str(home), **ENV}), instance, poll_interval_s=0.2)
        reports = {cycle: runner.run_cycle(cycle) for cycle in CYCLES}
    return FinishedCycles(home=home, reports=reports)
