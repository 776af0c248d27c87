from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.home import kotone_home
from kotone_pipeline.services.jobs import InvalidIdError


def test_home_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "state"))
    assert kotone_home() == tmp_path / "state" and (tmp_path / "state").is_dir()


def test_default_home_is_dot_kotone_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOTONE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert kotone_home() == tmp_path / ".kotone"
    assert kotone_home().is_absolute()


def test_cycle_ids_cannot_escape_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path))
    with pytest.raises(InvalidIdError):
        CycleArtifacts(kotone_home()).cycle_dir("../outside")
