"""Lexicon patches in the state store (files under $KOTONE_HOME, or the state repo): a proposed patch never
applies; accepting one moves the version,
and a dataset published from rows the new lexicon labelled is a new dataset version."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import lexicon_version, propose_lexicon_patch, stamp_lexicon_version
from kotone_pipeline.domain.requests.lexicon_reader import LexiconReader
from kotone_pipeline.services.hf_state_store import HfRepoStateStore
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.local_datasets import LocalDatasetStore
from kotone_pipeline_tests.domain.requests.test_lexicon_patch import _people_rows
from kotone_pipeline_tests.hf_standin.fixtures import FAST_RETRY, TOKEN, USER, hf_standin_fixture
from kotone_pipeline_tests.hf_standin.server import HubStandIn
from kotone_pipeline_tests.services.test_local_datasets import make_splits

__all__ = ["hf_standin_fixture"]


@pytest.fixture
def store(tmp_path: Path) -> LexiconStore:
    store = LexiconStore(tmp_path)
    store.save_patch("c1", propose_lexicon_patch(_people_rows(), default_lexicon()))
    return store


def test_a_proposed_patch_is_never_applied_unaccepted(store: LexiconStore) -> None:
    assert store.load_patch("c1").entries  # there is something to accept
    lexicon, version = store.current()
    assert version == lexicon_version(default_lexicon())
    assert LexiconReader(lexicon).read("a zorbly tune") is None
    with pytest.raises(ValueError, match="unknown patch entr"):
        store.accept("c1", ["add:nope"])
    assert store.accepted() == [] and store.current()[1] == version  # a refused accept writes nothing


def test_accepting_entries_moves_the_lexicon_version_once(store: LexiconStore) -> None:
    base_version = store.current()[1]
    (zorbly,) = [e.id for e in store.load_patch("c1").entries if e.phrase == "zorbly"]
    accepted, version = store.accept("c1", [zorbly])
    assert [e.id for e in accepted] == [zorbly] and version != base_version
    lexicon, current = store.current()
    assert current == version and LexiconReader(lexicon).read("a zorbly tune")[0] >= 8
    assert store.accept("c1", [zorbly]) == ([], version)  # accepting again changes nothing
    assert store.store.exists(f"versions/{version}.json")


def test_the_dataset_version_changes_with_the_lexicon_version(store: LexiconStore, tmp_path: Path) -> None:
    datasets = LocalDatasetStore(tmp_path / "datasets")
    splits = make_splits()
    before = store.current()[1]
    _, after = store.accept("c1")

    def publish(version: str) -> str:
        return datasets.publish("c1", {k: stamp_lexicon_version(v, version) for k, v in splits.items()}, {}).version

    assert publish(before) == publish(before)
    assert publish(after) != publish(before)
    person = Pair(group_id="h", source_type="request_text", text="x", vector=Vector.neutral(), origin="human")
    assert stamp_lexicon_version([person], before) == stamp_lexicon_version([person], after)


def test_a_patch_a_run_proposed_in_the_state_repo_is_accepted_from_another_machine(hf_standin: HubStandIn) -> None:
    def on_a_machine() -> LexiconStore:
        state = HfRepoStateStore(f"{USER}/kotone-state", token=TOKEN, endpoint=hf_standin.url, retry=FAST_RETRY)
        return LexiconStore.beside(state)

    where = on_a_machine().save_patch("c1", propose_lexicon_patch(_people_rows(), default_lexicon()))
    assert where.endswith("/blob/main/lexicon/patches/c1.json")
    person = on_a_machine()
    (zorbly,) = [e.id for e in person.load_patch("c1").entries if e.phrase == "zorbly"]
    accepted, version = person.accept("c1", [zorbly], accepted_by="ana")
    assert [e.id for e in accepted] == [zorbly]
    run = on_a_machine()  # the next cycle's run, elsewhere
    assert run.current()[1] == version and [a.accepted_by for a in run.accepted()] == ["ana"]
    assert run.store.exists(f"versions/{version}.json")
