"""Both state stores against the same expectations: the local files, and an HF repo on the stand-in driven by
the real huggingface_hub client."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kotone_pipeline.services.champion import Champion, ChampionChangedError, ChampionRegistry
from kotone_pipeline.services.hf_state_store import HfRepoStateStore
from kotone_pipeline.services.state_places import StatePlace
from kotone_pipeline.services.state_store import (
    LocalStateStore,
    StateStore,
    StateStoreError,
    Writes,
    check_key,
)
from kotone_pipeline.settings import ConfigurationError
from kotone_pipeline_tests.hf_standin.fixtures import FAST_RETRY, TOKEN, USER, hf_standin_fixture
from kotone_pipeline_tests.hf_standin.server import HubStandIn

__all__ = ["hf_standin_fixture"]
REPO = f"{USER}/kotone-state"


def hf_store(hub: HubStandIn, prefix: str = "") -> HfRepoStateStore:
    return HfRepoStateStore(REPO, prefix=prefix, token=TOKEN, endpoint=hub.url, retry=FAST_RETRY)


@pytest.fixture(params=["local", "hf"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "local":
        yield LocalStateStore(tmp_path / "state")
    else:
        hub = request.getfixturevalue("hf_standin")
        yield hf_store(hub)


def champion(run_id: str, mae: float) -> Champion:
    return Champion(
        model_id=f"c1/{run_id}",
        model_uri=f"/models/{run_id}",
        cycle_id="c1",
        run_id=run_id,
        holdout_mae=mae,
        decision_reason="beats the reference",
    )


def test_a_file_reads_back_as_written_and_a_missing_one_is_none(store: StateStore) -> None:
    assert store.read("cycles/c1/split_dataset.json") is None
    assert not store.exists("cycles/c1/split_dataset.json")
    store.write("cycles/c1/split_dataset.json", b'{"a": 1}\n')
    store.write("cycles/c1/split_dataset.json", b'{"a": 2}\n')  # replaced as a whole
    store.write("cycles/c2/eval_rows_probe.jsonl", '{"text": "caf\u00e9"}\n'.encode())
    assert store.read("cycles/c1/split_dataset.json") == b'{"a": 2}\n'
    assert store.read("cycles/c2/eval_rows_probe.jsonl") == '{"text": "caf\u00e9"}\n'.encode()
    assert store.exists("cycles/c1/split_dataset.json") and not store.exists("cycles/c1")
    assert store.folders("cycles") == ["c1", "c2"]
    assert store.folders("nothing") == []
    assert store.list_files("cycles") == ["c1/split_dataset.json", "c2/eval_rows_probe.jsonl"]
    assert store.list_files("nothing") == []


def test_update_writes_what_change_decides_on_what_is_there(store: StateStore) -> None:
    store.write("n", b"1")
    seen: list[Mapping[str, bytes | None]] = []

    def increment(files: Mapping[str, bytes | None]) -> Writes:
        seen.append(dict(files))
        return [("n", str(int(files["n"] or b"0") + 1).encode()), ("log", b"incremented")]

    store.update(["n", "missing"], increment)
    assert seen == [{"n": b"1", "missing": None}]
    assert store.read("n") == b"2" and store.read("log") == b"incremented"


def test_a_refused_change_writes_nothing(store: StateStore) -> None:
    store.write("n", b"1")

    def refuse(files: Mapping[str, bytes | None]) -> Writes:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        store.update(["n"], refuse)
    assert store.read("n") == b"1" and not store.exists("log")


def test_a_version_changes_when_the_file_is_written(store: StateStore) -> None:
    store.write("champion.json", b"1")
    before = store.version("champion.json")
    assert store.version("champion.json") == before
    store.write("champion.json", b"22")
    assert store.version("champion.json") != before


def test_a_folder_moves_as_a_whole(store: StateStore) -> None:
    store.write("cycles/c1/a.json", b"a")
    store.write("cycles/c1/runs/r1/b.jsonl", b"b")
    store.write("cycles/c2/a.json", b"other")

    assert store.move_folder("cycles/c1", "deleted/c1-1/cycle") is True

    assert store.folders("cycles") == ["c2"]
    assert store.read("deleted/c1-1/cycle/a.json") == b"a"
    assert store.read("deleted/c1-1/cycle/runs/r1/b.jsonl") == b"b"
    assert store.read("cycles/c1/a.json") is None
    assert store.move_folder("cycles/c9", "deleted/c9") is False


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/", "a\\b", "./a"])
def test_a_key_that_could_leave_the_store_is_refused(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_the_registry_on_the_hub_promotes_in_one_commit_and_is_idempotent(hf_standin: HubStandIn) -> None:
    registry = ChampionRegistry(hf_store(hf_standin, prefix="registry"))
    assert registry.current() is None and registry.history() == []
    commits_before = hf_standin.count("repo.commit")

    assert registry.promote(champion("r1", 1.2), "d1", expected_current=None) is True
    assert hf_standin.count("repo.commit") == commits_before + 1  # champion.json and the history together
    assert registry.promote(champion("r1", 1.2), "d1", expected_current=None) is False  # already applied
    assert registry.promote(champion("r2", 0.9), "d2", expected_current="c1/r1") is True

    again = ChampionRegistry(hf_store(hf_standin, prefix="registry"))  # another pod
    assert again.current() is not None and again.current().run_id == "r2"
    assert [c.decision_id for c in again.history()] == ["d1", "d2"]
    assert registry.where() == f"hf dataset {REPO}/registry"
    with pytest.raises(ChampionChangedError, match="from c1/r1 to c1/r2"):
        again.promote(champion("r3", 0.5), "d3", expected_current="c1/r1")

    rolled = again.rollback("r2 regressed on people's requests")
    assert rolled.applied and rolled.entry.model_id == "c1/r1" and rolled.entry.replaced == "c1/r2"
    assert registry.current().model_id == "c1/r1"


def test_a_commit_that_lost_a_race_is_decided_again_on_what_the_winner_wrote(hf_standin: HubStandIn) -> None:
    """Two pods promote against the same champion at once: the Hub takes one commit; the other is refused
    (HTTP 412), reads again, sees the new champion and refuses the stale comparison."""
    registry = ChampionRegistry(hf_store(hf_standin, prefix="registry"))
    registry.promote(champion("r1", 1.2), "d1")
    rival = ChampionRegistry(hf_store(hf_standin, prefix="registry"))
    store = registry.store
    assert isinstance(store, HfRepoStateStore)
    real_commit = store._commit
    raced = threading.Event()

    def commit_after_the_rival(files: dict[str, bytes], message: str, parent: str | None) -> None:
        if not raced.is_set():
            raced.set()
            assert rival.promote(champion("r2", 1.0), "d2", expected_current="c1/r1") is True
        real_commit(files, message, parent)

    store._commit = commit_after_the_rival  # type: ignore[method-assign]
    with pytest.raises(ChampionChangedError, match="from c1/r1 to c1/r2"):
        registry.promote(champion("r3", 0.8), "d3", expected_current="c1/r1")
    assert sum(1 for r in hf_standin.requests if r.route == "repo.commit" and r.status == 412) == 1
    assert [c.decision_id for c in registry.history()] == ["d1", "d2"]
    assert registry.current().run_id == "r2"


def test_a_token_without_access_is_named_without_its_value(hf_standin: HubStandIn) -> None:
    store = HfRepoStateStore(REPO, token="hf_not-a-known-token-0123456", endpoint=hf_standin.url, retry=FAST_RETRY)
    with pytest.raises(StateStoreError) as caught:
        store.read("champion.json")
    assert "hf_not-a-known-token-0123456" not in str(caught.value)
    assert REPO in str(caught.value) and "HTTP 401" in str(caught.value)


def test_the_hf_store_needs_its_repo(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="KOTONE_HF_STATE_REPO"):
        StatePlace("hf").store(tmp_path)
    local = StatePlace().store(tmp_path, prefix="registry")
    assert isinstance(local, LocalStateStore) and local.root == tmp_path / "registry"
