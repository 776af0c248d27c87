"""The instance `kotone` opens (DAGSTER_HOME under KOTONE_HOME) has the repository's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.orchestration.runner import open_instance


def test_the_ui_opens_without_the_community_dialog_and_sends_no_telemetry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "kotone"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = open_instance()
    try:
        assert (tmp_path / "kotone" / "dagster" / "dagster.yaml").is_file()
        # The webserver's shouldShowNux is this setting (and whether the browser dismissed it before).
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False
        assert instance.run_monitoring_enabled is True
    finally:
        instance.dispose()


def test_headless_runs_wait_a_second_in_the_queue_and_a_dead_run_frees_its_pool_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `kotone demo` submits through the daemon's queue: at Dagster's 5 s default each run would wait longer
    # than it takes; and a run killed inside training_submission must not block every later cycle.
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "kotone"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    instance = open_instance()
    try:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        assert instance.run_monitoring_settings.get("free_slots_after_run_end_seconds") == 60
    finally:
        instance.dispose()
