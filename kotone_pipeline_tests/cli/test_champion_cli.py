"""``kotone champion history|rollback``: the table and JSON, read-only history, refusals, the Dagster observation,
and a rollback between real cycles (the next gate compares against it, the workflow log shows it)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return home


def registry(home: Path) -> ChampionRegistry:
    return ChampionRegistry(CycleArtifacts(home).registry_dir)


def promote_three(home: Path) -> ChampionRegistry:
    """demo-001..003 promoted in order (demo-003 forced), each with a model directory that exists."""
    reg = registry(home)
    for n, (holdout, human) in enumerate([(0.95, 1.12), (0.91, 1.14), (0.97, 1.18)], start=1):
        model_dir = home / "models" / f"demo-00{n}"
        model_dir.mkdir(parents=True)
        reg.promote(
            Champion(
                model_id=f"demo-00{n}/run-0",
                model_uri=str(model_dir),
                cycle_id=f"demo-00{n}",
                run_id="run-0",
                holdout_mae=holdout,
                human_mae=human,
                decision_reason=f"gate {n}" if n < 3 else "forced: operator",
                forced=n == 3,
            ),
            f"demo-00{n}/run-0",
        )
    return reg


def kotone(*args: str) -> object:
    return runner.invoke(app, list(args))


# --- history ---------------------------------------------------------------------------------------------------


def test_history_without_a_home_is_one_line_and_creates_nothing(home: Path) -> None:
    for args in (["champion", "history"], ["champion", "history", "--json"]):
        result = kotone(*args)
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [
            f"error: no Kotone home at {home} (set by KOTONE_HOME): point KOTONE_HOME at the home whose champions "
            "to show, or run `kotone demo` to make one"
        ]
    assert not home.exists()


def test_history_of_an_empty_home(home: Path) -> None:
    home.mkdir()
    result = kotone("champion", "history")
    assert result.exit_code == 0 and "no promotion yet" in result.output
    listed = json.loads(kotone("champion", "history", "--json").output)
    assert listed["entries"] == [] and listed["current"] is None
    assert sorted(p.name for p in home.iterdir()) == []  # no registry, no Dagster instance


def test_history_table_lists_every_change_newest_first(home: Path) -> None:
    promote_three(home)
    assert kotone("champion", "rollback", "--reason", "demo-003 regressed").exit_code == 0

    result = kotone("champion", "history")

    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ 20")]
    decisions = [row.split("│")[2].strip() for row in rows]
    assert decisions == ["rollback/1", "demo-003/run-0", "demo-002/run-0", "demo-001/run-0"]
    kinds = [row.split("│")[3].strip() for row in rows]
    assert kinds == ["rollback", "forced", "promotion", "promotion"]
    first = [cell.strip() for cell in rows[0].split("│")[1:-1]]
    assert first[3:8] == ["demo-002/run-0 (current)", "demo-003/run-0", "0.9100", "1.1400", "demo-003 regressed"]
    assert "(current)" not in "".join(rows[1:])
    assert [cell.strip() for cell in rows[1].split("│")[5:8]] == ["demo-002/run-0", "0.9700", "1.1800"]
    assert not (home / "dagster").exists()  # reading history never creates an instance


def test_history_json(home: Path) -> None:
    promote_three(home)
    kotone("champion", "rollback", "--to", "demo-001/run-0", "--reason", "back to the start")

    result = kotone("champion", "history", "--json")

    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert listed["current"] == "demo-001/run-0"
    assert listed["registry"] == str(CycleArtifacts(home).registry_dir)
    entries = listed["entries"]
    assert [(e["decision_id"], e["kind"], e["replaced"], e["current"]) for e in entries] == [
        ("rollback/1", "rollback", "demo-003/run-0", True),
        ("demo-003/run-0", "forced", "demo-002/run-0", False),
        ("demo-002/run-0", "promotion", "demo-001/run-0", False),
        ("demo-001/run-0", "promotion", None, False),
    ]
    assert entries[0]["decision_reason"] == "back to the start"
    assert (entries[0]["holdout_mae"], entries[0]["human_mae"], entries[0]["rollback"]) == (0.95, 1.12, True)
    assert entries[1]["forced"] is True and entries[1]["rollback"] is False


# --- rollback --------------------------------------------------------------------------------------------------


def test_rollback_prints_the_decision_and_changes_the_champion(home: Path) -> None:
    promote_three(home)

    result = kotone("champion", "rollback", "--reason", "demo-003 regressed on app traffic")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "rolled back to demo-002/run-0 (was demo-003/run-0); decision rollback/1"
    assert "holdout MAE 0.9100, human MAE 1.1400" in lines[1]
    assert lines[2] == "  reason: demo-003 regressed on app traffic"
    assert f"no Dagster instance at {home / 'dagster'}" in result.output
    assert not (home / "dagster").exists()
    current = registry(home).current()
    assert (current.model_id, current.rollback, current.replaced) == ("demo-002/run-0", True, "demo-003/run-0")


def test_rollback_with_a_repeated_decision_id_is_a_no_op(home: Path) -> None:
    promote_three(home)
    first = kotone("champion", "rollback", "--reason", "r", "--decision-id", "rollback/incident-7", "--json")
    again = kotone("champion", "rollback", "--reason", "r", "--decision-id", "rollback/incident-7")

    assert json.loads(first.output)["applied"] is True
    assert again.exit_code == 0 and "rollback/incident-7 was already applied" in again.output
    assert [e.decision_id for e in registry(home).history()][-1] == "rollback/incident-7"
    assert len(registry(home).history()) == 4
    assert registry(home).current().model_id == "demo-002/run-0"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", ["--reason", "x"], "no Kotone home at"),
        ("empty", ["--reason", "x"], "no champion to roll back from"),
        ("three", ["--reason", "x", "--to", "demo-009/run-0"], "demo-009/run-0 was never champion"),
        ("three", ["--reason", "x", "--to", "demo-003/run-0"], "demo-003/run-0 is already the current champion"),
        ("three", ["--reason", "  "], "a rollback needs a reason"),
        ("gone", ["--reason", "x"], "demo-002/run-0: its model is gone from"),
    ],
)
def test_rollback_refusals(home: Path, setup: str, args: list[str], message: str) -> None:
    if setup == "empty":
        home.mkdir()
    elif setup in ("three", "gone"):
        promote_three(home)
        if setup == "gone":
            (home / "models" / "demo-002").rmdir()
    history_before = registry(home).history() if home.exists() else []

    result = kotone("champion", "rollback", *args)

    assert result.exit_code in (1, 2)
    assert result.exit_code == (1 if setup == "none" else 2)
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    if setup == "none":
        assert not home.exists()
    else:
        assert registry(home).history() == history_before
    if setup == "empty":
        assert sorted(p.name for p in home.iterdir()) == []


def test_rollback_is_an_observation_of_promotion_decision_in_the_dagster_instance(home: Path) -> None:
    from kotone_pipeline.orchestration.runner import open_instance

    promote_three(home)
    with open_instance(home):  # the instance `kotone dev` and `kotone demo` use
        pass

    result = kotone("champion", "rollback", "--reason", "demo-003 regressed")

    assert result.exit_code == 0, result.output
    assert "reported to the Dagster UI as an observation of promotion_decision" in result.output
    with open_instance(home) as instance:
        records = instance.fetch_observations(dg.AssetKey("promotion_decision"), limit=10).records
    assert len(records) == 1
    observation = records[0].event_log_entry.asset_observation
    meta = {key: value.value for key, value in observation.metadata.items()}
    assert meta["reason"] == "demo-003 regressed"
    assert (meta["from"], meta["to"], meta["decision_id"]) == ("demo-003/run-0", "demo-002/run-0", "rollback/1")
    assert meta["to_holdout_mae"] == 0.91 and meta["to_human_mae"] == 1.14
    assert records[0].run_id == ""  # runless: no run computed it
