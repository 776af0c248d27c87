"""Deleting a cycle: partition gone, unfinished jobs canceled, artifacts moved aside; the champion's cycle stays.
Invalid partition keys (which Dagster accepts) are reported by `kotone status` and removable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.orchestration.cycle_admin import CycleDeleteRefusedError, delete_cycle, invalid_reason
from kotone_pipeline.orchestration.partitions import cycles
from kotone_pipeline.orchestration.runner import open_instance
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.jobs import JobSpec
from kotone_pipeline.services.local_jobs import LocalJobBackend
from kotone_pipeline_tests.documents import submission

KOTONE = str(Path(sys.executable).parent / "kotone")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _spec(cycle_id: str, run_id: str, home: Path) -> JobSpec:
    dataset = DatasetRef(store="local", name="d", version="v", uri=str(home / "nowhere"), data_hash="h")
    return JobSpec(cycle_id=cycle_id, run_id=run_id, dataset=dataset, timeout_s=300)


def _world(home: Path) -> tuple[CycleArtifacts, ChampionRegistry, LocalJobBackend]:
    artifacts = CycleArtifacts(home)
    return artifacts, ChampionRegistry(artifacts.registry_dir), LocalJobBackend(artifacts.jobs_dir, command=SLEEPER)


def test_delete_cancels_open_jobs_moves_artifacts_and_removes_the_partition(tmp_path: Path) -> None:
    artifacts, registry, backend = _world(tmp_path)
    running = backend.submit(_spec("c1", "r0", tmp_path))
    artifacts.write("c1", submission("c1", [running.job_id]))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(cycles.name, ["c1", "c2"])
        report = delete_cycle(instance, artifacts, registry, backend, "c1")
        assert list(instance.get_dynamic_partitions(cycles.name)) == ["c2"]
    assert report.partition_removed and report.jobs_canceled == [running.job_id]
    moved = Path(report.moved_to or "")
    assert json.loads((moved / "jobs" / running.job_id / "job.json").read_text())["stage"] == "CANCELED"
    assert (moved / "cycle" / "training_submission.json").is_file()
    assert not artifacts.cycle_dir("c1").exists() and not (artifacts.jobs_dir / running.job_id).exists()
    assert any("canceled unfinished job(s): c1.r0" in line for line in report.lines())


def test_delete_refuses_the_cycle_of_the_champion_and_unknown_cycles(tmp_path: Path) -> None:
    artifacts, registry, backend = _world(tmp_path)
    champion = Champion(
        model_id="c1/r0", model_uri="x", cycle_id="c1", run_id="r0", holdout_mae=0.3, decision_reason="test"
    )
    registry.promote(champion, "c1/r0")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(cycles.name, ["c1"])
        with pytest.raises(CycleDeleteRefusedError, match="produced the current champion 'c1/r0'"):
            delete_cycle(instance, artifacts, registry, backend, "c1")
        with pytest.raises(CycleDeleteRefusedError, match="no cycle 'c9'"):
            delete_cycle(instance, artifacts, registry, backend, "c9")
        assert list(instance.get_dynamic_partitions(cycles.name)) == ["c1"]


def test_invalid_reason_names_the_rule() -> None:
    assert invalid_reason("nightly-20261130") is None
    assert "invalid cycle id 'Bad_Cycle'" in (invalid_reason("Bad_Cycle") or "")


def _kotone(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KOTONE_HOME": str(home), "KOTONE_WANDB_MODE": "disabled"}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([KOTONE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_status_reports_an_invalid_key_and_delete_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "kotone"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = open_instance()  # the instance `kotone` opens: DAGSTER_HOME under KOTONE_HOME
    # "Bad_Cycle" is what the UI's "add partition" box accepts although it is not a valid cycle id.
    instance.add_dynamic_partitions(cycles.name, ["good-1", "Bad_Cycle"])
    table = _kotone(home, "status")
    assert table.returncode == 0, table.stderr
    assert "good-1" in table.stdout and "Bad_Cycle" in table.stdout
    assert "kotone cycle delete 'Bad_Cycle'" in table.stderr and "Traceback" not in table.stderr
    deleted = _kotone(home, "cycle", "delete", "Bad_Cycle")
    assert deleted.returncode == 0, deleted.stderr
    assert "removed partition 'Bad_Cycle'" in deleted.stdout
    shown = _kotone(home, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [(r["cycle_id"], r["stage"]) for r in json.loads(shown.stdout)["cycles"]] == [("good-1", "created")]
    instance.dispose()


def test_status_json_marks_invalid_keys(tmp_path: Path) -> None:
    from kotone_pipeline.cli.cycle import _cycle_row
    from kotone_pipeline.cycle.steps import STAGES

    artifacts = CycleArtifacts(tmp_path)
    row = _cycle_row(artifacts, "Bad_Cycle", STAGES)
    assert row["stage"] == "invalid" and "invalid cycle id 'Bad_Cycle'" in row["problem"]
    assert _cycle_row(artifacts, "ok-1", STAGES) == {"cycle_id": "ok-1", "stage": "created", "decision": None}
