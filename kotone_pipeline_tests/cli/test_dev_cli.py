"""The environment `kotone dev` hands to Dagster: it runs from DAGSTER_HOME, so paths must not be relative."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.cli.dev import QUIET_WARNINGS, dev_env


def test_relative_paths_become_absolute_and_only_the_supersession_warning_is_quieted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KOTONE_HOME", raising=False)
    environ = {"KOTONE_DATA_DIR": "data", "KOTONE_WANDB_MODE": "offline", "PYTHONWARNINGS": "error::DeprecationWarning"}
    env = dev_env(environ, tmp_path / "dh", tmp_path)
    assert env["DAGSTER_HOME"] == str(tmp_path / "dh")
    assert env["KOTONE_HOME"] == str(tmp_path / ".kotone")  # the default home, fixed where kotone ran
    assert env["KOTONE_DATA_DIR"] == str(tmp_path / "data")
    assert env["KOTONE_WANDB_MODE"] == "offline"
    assert env["PYTHONWARNINGS"] == f"error::DeprecationWarning,{QUIET_WARNINGS}"
