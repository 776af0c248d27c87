from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.services.home import cycle_dir, jobs_root, kotone_home
from kotone_pipeline.services.jobs import InvalidIdError


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "state"))
    assert kotone_home() == tmp_path / "state" and (tmp_path / "state").is_dir()
    assert cycle_dir("nightly-20260101") == tmp_path / "state" / "cycles" / "nightly-20260101"
    assert cycle_dir("nightly-20260101").is_dir()
    assert jobs_root() == tmp_path / "state" / "jobs"


def test_default_home_is_dot_kotone_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOTONE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert kotone_home() == tmp_path / ".kotone"
    assert kotone_home().is_absolute()


def test_cycle_ids_cannot_escape_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path))
    with pytest.raises(InvalidIdError):
        cycle_dir("../outside")
