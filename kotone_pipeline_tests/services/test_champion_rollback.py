"""ChampionRegistry.rollback: a recorded decision with promote's discipline (compare-and-swap, idempotent by
decision id, champion.json first), its refusals, and the promotions that follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.services.champion import (
    HISTORY_FILE,
    Champion,
    ChampionChangedError,
    ChampionRegistry,
    RollbackRefusedError,
    replaced_ids,
)
from kotone_pipeline_tests.services.crashes import crash_before_writing, crash_halfway_through_a_write


def champion(name: str, mae: float, human: float | None = None, forced: bool = False) -> Champion:
    return Champion(
        model_id=f"{name}/run-0",
        model_uri=f"/models/{name}",
        cycle_id=name,
        run_id="run-0",
        holdout_mae=mae,
        human_mae=human,
        per_dim_mae={"energy": mae},
        decision_reason=f"{name} beats the champion",
        forced=forced,
    )


def three_champions(root: Path) -> ChampionRegistry:
    """c1, c2 and c3 promoted in that order (c3 forced); c3 is the champion."""
    registry = ChampionRegistry(root)
    registry.promote(champion("c1", 0.95, 1.12), "c1/run-0", expected_current=None)
    registry.promote(champion("c2", 0.91, 1.14), "c2/run-0", expected_current="c1/run-0")
    registry.promote(champion("c3", 0.97, 1.18, forced=True), "c3/run-0")
    return registry


def ids(registry: ChampionRegistry) -> list[str | None]:
    return [entry.decision_id for entry in registry.history()]


def test_a_rollback_restores_the_champion_the_current_one_replaced(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)

    result = registry.rollback("c3 regressed on app traffic", expected_current="c3/run-0")

    assert result.applied
    current = registry.current()
    assert current == result.entry
    # The restored model as it was promoted (uri, cycle, scores), as a rollback decision with its reason.
    assert (current.model_id, current.model_uri, current.cycle_id, current.run_id) == (
        "c2/run-0",
        "/models/c2",
        "c2",
        "run-0",
    )
    assert (current.holdout_mae, current.human_mae, current.per_dim_mae) == (0.91, 1.14, {"energy": 0.91})
    assert current.rollback and not current.forced
    assert current.decision_id == "rollback/1" and current.replaced == "c3/run-0"
    assert current.decision_reason == "c3 regressed on app traffic"
    assert ids(registry) == ["c1/run-0", "c2/run-0", "c3/run-0", "rollback/1"]
    assert replaced_ids(registry.history()) == [None, "c1/run-0", "c2/run-0", "c3/run-0"]


def test_repeated_rollbacks_walk_back_one_promotion_at_a_time(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)

    assert registry.rollback("one").entry.model_id == "c2/run-0"
    assert registry.rollback("two").entry.model_id == "c1/run-0"
    with pytest.raises(RollbackRefusedError, match="c1/run-0 was the first champion"):
        registry.rollback("three")

    assert ids(registry)[3:] == ["rollback/1", "rollback/2"]
    assert registry.current().model_id == "c1/run-0"


def test_rollback_to_a_named_champion(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)

    entry = registry.rollback("back to the first", to="c1/run-0").entry

    assert (entry.model_id, entry.replaced, entry.holdout_mae) == ("c1/run-0", "c3/run-0", 0.95)
    assert registry.current().model_id == "c1/run-0"


def test_rollback_then_promotion_compares_against_the_rolled_back_champion(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)
    registry.rollback("c3 regressed", expected_current="c3/run-0")

    # A cycle that started before the rollback compared against c3: its promotion is refused.
    with pytest.raises(ChampionChangedError, match="changed from c3/run-0 to c2/run-0"):
        registry.promote(champion("stale", 0.5), "stale/run-0", expected_current="c3/run-0")
    # The next cycle's gate compared against the rolled-back champion: its promotion goes through.
    assert registry.promote(champion("c4", 0.89, 1.10), "c4/run-0", expected_current="c2/run-0")

    history = registry.history()
    assert [e.decision_id for e in history] == ["c1/run-0", "c2/run-0", "c3/run-0", "rollback/1", "c4/run-0"]
    assert [e.rollback for e in history] == [False, False, False, True, False]
    assert replaced_ids(history)[-2:] == ["c3/run-0", "c2/run-0"]
    # The champion c4 replaced was the rolled-back c2, so rolling back c4 restores c2 again.
    assert registry.rollback("c4 too").entry.model_id == "c2/run-0"


def test_a_decision_id_is_applied_once(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)
    first = registry.rollback("incident 12", decision_id="rollback/incident-12")
    registry.promote(champion("c4", 0.9), "c4/run-0")

    again = registry.rollback("incident 12", decision_id="rollback/incident-12")

    assert first.applied and not again.applied
    assert again.entry == first.entry
    assert registry.current().model_id == "c4/run-0"  # the retried rollback did not undo c4
    assert ids(registry) == ["c1/run-0", "c2/run-0", "c3/run-0", "rollback/incident-12", "c4/run-0"]


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        ("empty", {}, "no champion to roll back from"),
        ("one", {}, "c1/run-0 was the first champion"),
        ("three", {"to": "c9/run-0"}, "c9/run-0 was never champion; the champions in the history: c3/run-0, c2/run-0"),
        ("three", {"to": "c3/run-0"}, "c3/run-0 is already the current champion"),
        ("three", {"reason": " \n "}, "a rollback needs a reason"),
    ],
)
def test_refusals_change_nothing(tmp_path: Path, setup: str, kwargs: dict[str, str], message: str) -> None:
    registry = ChampionRegistry(tmp_path)
    if setup == "one":
        registry.promote(champion("c1", 0.95), "c1/run-0")
    elif setup == "three":
        registry = three_champions(tmp_path)
    champion_before = registry.champion_path.read_bytes() if registry.champion_path.exists() else None
    history_before = registry.history_path.read_bytes() if registry.history_path.exists() else None
    kwargs.setdefault("reason", "because")

    with pytest.raises(RollbackRefusedError, match=message):
        registry.rollback(**kwargs)

    assert (registry.champion_path.read_bytes() if registry.champion_path.exists() else None) == champion_before
    assert (registry.history_path.read_bytes() if registry.history_path.exists() else None) == history_before


def test_a_missing_registry_is_refused_and_not_created(tmp_path: Path) -> None:
    registry = ChampionRegistry(tmp_path / "home" / "registry")

    with pytest.raises(RollbackRefusedError, match="no champion registry at"):
        registry.rollback("why")

    assert not (tmp_path / "home").exists()


def test_a_stale_expected_champion_changes_nothing(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)

    with pytest.raises(ChampionChangedError, match="changed from c2/run-0 to c3/run-0"):
        registry.rollback("why", expected_current="c2/run-0")

    assert registry.current().model_id == "c3/run-0" and len(registry.history()) == 3


def test_a_check_can_refuse_the_target(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)

    def gone(target: Champion) -> None:
        raise RollbackRefusedError(f"{target.model_id}: its model is gone")

    with pytest.raises(RollbackRefusedError, match="c2/run-0: its model is gone"):
        registry.rollback("why", check=gone)

    assert registry.current().model_id == "c3/run-0" and len(registry.history()) == 3


def test_a_crash_while_writing_the_champion_leaves_the_old_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = three_champions(tmp_path)
    before = registry.champion_path.read_bytes()

    crash_halfway_through_a_write(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        registry.rollback("why")
    monkeypatch.undo()

    assert registry.champion_path.read_bytes() == before
    assert len(registry.history()) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_a_crash_between_the_two_writes_is_completed_by_a_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = three_champions(tmp_path)

    crash_before_writing(monkeypatch, HISTORY_FILE)  # champion.json is written, the history is not
    with pytest.raises(OSError):
        registry.rollback("c3 regressed")
    monkeypatch.undo()
    assert registry.current().decision_id == "rollback/1"
    assert ids(registry) == ["c1/run-0", "c2/run-0", "c3/run-0"]

    # The same command again: the interrupted rollback is completed, not refused and not made twice.
    result = registry.rollback("c3 regressed")

    assert result.applied and result.entry.decision_id == "rollback/1"
    assert result.entry.replaced == "c3/run-0" and result.entry.model_id == "c2/run-0"
    assert ids(registry) == ["c1/run-0", "c2/run-0", "c3/run-0", "rollback/1"]
    assert registry.current() == registry.history()[-1]


def test_an_interrupted_promotion_is_recorded_before_a_rollback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = three_champions(tmp_path)

    crash_before_writing(monkeypatch, HISTORY_FILE)
    with pytest.raises(OSError):
        registry.promote(champion("c4", 0.9), "c4/run-0")
    monkeypatch.undo()

    # c4 is champion (champion.json) though its decision is not in the history: the rollback records it
    # first, then rolls it back to the champion it replaced.
    result = registry.rollback("c4 is bad", expected_current="c4/run-0")

    assert (result.entry.model_id, result.entry.replaced) == ("c3/run-0", "c4/run-0")
    assert ids(registry) == ["c1/run-0", "c2/run-0", "c3/run-0", "c4/run-0", "rollback/1"]
    # Re-running the interrupted promotion is now the no-op it is for any applied decision.
    assert registry.promote(champion("c4", 0.9), "c4/run-0") is False
    assert registry.current().model_id == "c3/run-0"


def test_files_written_before_rollbacks_existed_still_read(tmp_path: Path) -> None:
    registry = three_champions(tmp_path)
    # An older registry line has neither field; it reads as a promotion.
    old = registry.history_path.read_text().replace(',"rollback":false', "")
    assert '"rollback"' not in old
    registry.history_path.write_text(old)

    assert [e.rollback for e in registry.history()] == [False, False, False]
    assert registry.rollback("why").entry.model_id == "c2/run-0"
