from __future__ import annotations

import json
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.jsonl import DataFileError
from kotone_pipeline.services.champion import HISTORY_FILE, Champion, ChampionRegistry
from kotone_pipeline_tests.services.crashes import crash_before_writing, crash_halfway_through_a_write


def champion(run_id: str, mae: float, forced: bool = False) -> Champion:
    return Champion(
        model_id=f"local-{run_id}",
        model_uri=f"/models/{run_id}/model.joblib",
        cycle_id="c1",
        run_id=run_id,
        holdout_mae=mae,
        per_dim_mae={"energy": mae, "warmth": mae + 0.1},
        decision_reason="beats the champion by 0.2",
        forced=forced,
    )


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".tmp"))


def test_an_empty_registry_has_no_champion(tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path / "registry")
    assert registry.current() is None and registry.history() == []


def test_promotions_change_the_champion_and_are_recorded_in_order(tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path)

    assert registry.promote(champion("r1", 1.2), "d1") is True
    assert registry.promote(champion("r2", 0.9, forced=True), "d2") is True

    current = registry.current()
    assert current.run_id == "r2" and current.forced is True and current.decision_id == "d2"
    assert [(c.run_id, c.decision_id) for c in registry.history()] == [("r1", "d1"), ("r2", "d2")]
    # A fresh registry object (another process) sees the same state.
    assert ChampionRegistry(tmp_path).current() == current


def test_an_applied_decision_is_not_applied_again(tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path)
    registry.promote(champion("r1", 1.2), "d1")
    registry.promote(champion("r2", 0.9), "d2")

    # Re-materializing the first decision must not bring r1 back.
    assert registry.promote(champion("r1", 1.2), "d1") is False

    assert registry.current().run_id == "r2"
    assert [c.decision_id for c in registry.history()] == ["d1", "d2"]


def test_a_crash_while_writing_the_champion_leaves_the_old_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ChampionRegistry(tmp_path)
    registry.promote(champion("r1", 1.2), "d1")
    before = registry.champion_path.read_bytes()

    crash_halfway_through_a_write(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        registry.promote(champion("r2", 0.9), "d2")
    monkeypatch.undo()

    assert registry.champion_path.read_bytes() == before
    assert registry.current().run_id == "r1"
    assert [c.decision_id for c in registry.history()] == ["d1"]
    assert leftovers(tmp_path) == []


def test_a_crash_between_the_two_writes_is_completed_by_a_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ChampionRegistry(tmp_path)
    registry.promote(champion("r1", 1.2), "d1")

    crash_before_writing(monkeypatch, HISTORY_FILE)  # champion.json is written, the history is not
    with pytest.raises(OSError):
        registry.promote(champion("r2", 0.9), "d2")
    monkeypatch.undo()
    assert registry.current().run_id == "r2"
    assert [c.decision_id for c in registry.history()] == ["d1"]

    assert registry.promote(champion("r2", 0.9), "d2") is True

    assert [c.decision_id for c in registry.history()] == ["d1", "d2"]
    assert leftovers(tmp_path) == []


def test_a_corrupt_champion_file_is_reported_with_its_path(tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path)
    registry.promote(champion("r1", 1.2), "d1")
    data = json.loads(registry.champion_path.read_text())
    data["holdout_mae"] = "not a number"
    registry.champion_path.write_text(json.dumps(data))

    with pytest.raises(DataFileError, match="champion.json.*holdout_mae"):
        registry.current()


def test_promote_requires_a_decision_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="decision"):
        ChampionRegistry(tmp_path).promote(champion("r1", 1.2), "")


def test_a_promotion_compared_against_a_stale_champion_changes_nothing(tmp_path: Path) -> None:
    from kotone_pipeline.services.champion import ChampionChangedError

    registry = ChampionRegistry(tmp_path)
    registry.promote(champion("r0", 0.30), decision_id="c0/r0")
    # Cycles a and b both started from local-r0; a promotes first.
    registry.promote(champion("ra", 0.20), decision_id="a/ra", expected_current="local-r0")
    with pytest.raises(ChampionChangedError, match="changed from local-r0 to local-ra"):
        registry.promote(champion("rb", 0.29), decision_id="b/rb", expected_current="local-r0")
    assert registry.current().model_id == "local-ra"
    assert [c.decision_id for c in registry.history()] == ["c0/r0", "a/ra"]
    # Re-applying a decision that already went through is still a quiet no-op.
    assert registry.promote(champion("ra", 0.20), decision_id="a/ra", expected_current="local-r0") is False


def test_the_first_promotion_expects_no_champion(tmp_path: Path) -> None:
    from kotone_pipeline.services.champion import ChampionChangedError

    registry = ChampionRegistry(tmp_path)
    registry.promote(champion("r1", 0.3), decision_id="x/r1", expected_current=None)
    with pytest.raises(ChampionChangedError):
        registry.promote(champion("r2", 0.2), decision_id="y/r2", expected_current=None)
