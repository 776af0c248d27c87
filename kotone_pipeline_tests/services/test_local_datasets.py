from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.services.datasets import OPTIONAL_SPLITS, DatasetRef
from kotone_pipeline.services.datasets import SPLIT_FILES as ALL_SPLIT_FILES
from kotone_pipeline.services.local_datasets import (
    DEFAULT_DATASET_NAME,
    DatasetIntegrityError,
    DatasetNotFoundError,
    LocalDatasetStore,
)

# The files of a version without reviewed requests (an empty field split is not held).
SPLIT_FILES = {s: f for s, f in ALL_SPLIT_FILES.items() if s not in OPTIONAL_SPLITS}


def pair(n: int, origin: str = "teacher") -> Pair:
    return Pair(
        group_id=f"g{n}",
        source_type="request_text",
        text=f"a calm warm tune number {'x' * n} for a quiet alley",
        vector=Vector.from_values([n % 11, 5, 5, 5, 5, (n * 3) % 11]),
        origin=origin,  # type: ignore[arg-type]
        meta={"seed": n},
    )


def make_splits(offset: int = 0) -> dict[str, list[Pair]]:
    return {
        "train": [pair(offset + i) for i in range(5)],
        "validation": [pair(offset + 10)],
        "test": [pair(offset + 11), pair(offset + 12)],
        "holdout": [pair(offset + 20)],
        "probe": [pair(offset + 30)],
        "human": [pair(offset + 40)],
    }


def dumped(splits: dict[str, list[Pair]]) -> dict[str, list[dict]]:
    return {split: [row.model_dump() for row in rows] for split, rows in splits.items()}


@pytest.fixture
def store(tmp_path: Path) -> LocalDatasetStore:
    return LocalDatasetStore(tmp_path / "datasets")


def test_publish_then_load_round_trips_with_a_card(store: LocalDatasetStore) -> None:
    splits = make_splits()
    ref = store.publish("c1", splits, {"teacher_seed": 7, "add_ratio": 0.2})

    assert ref.store == "local" and ref.name == DEFAULT_DATASET_NAME
    assert len(ref.data_hash) == 64 and ref.version == ref.data_hash[:16]
    version_dir = Path(ref.uri)
    assert version_dir == store.root / DEFAULT_DATASET_NAME / ref.version
    assert sorted(p.name for p in version_dir.iterdir()) == sorted([*SPLIT_FILES.values(), "card.json", "README.md"])
    assert dumped(store.load(ref)) == dumped(splits)
    assert store.materialize_local(ref, Path("/unused")) == version_dir

    card = json.loads((version_dir / "card.json").read_text())
    assert {split: info["rows"] for split, info in card["splits"].items()} == {
        "train": 5,
        "validation": 1,
        "test": 2,
        "holdout": 1,
        "probe": 1,
        "human": 1,
    }
    assert card["cycle_id"] == "c1" and card["data_hash"] == ref.data_hash
    assert card["card"] == {"teacher_seed": 7, "add_ratio": 0.2}
    # parts, parent_id and cycle are None in every row, so they are not columns of the files.
    assert card["columns"] == ["id", "group_id", "source_type", "text", "vector", "origin", "meta"]
    train_bytes = (version_dir / "train.jsonl").read_bytes()
    assert card["splits"]["train"]["sha256"] == hashlib.sha256(train_bytes).hexdigest()
    readme = (version_dir / "README.md").read_text()
    assert "| train | 5 |" in readme and "teacher_seed" in readme and ref.data_hash in readme


def test_identical_content_publishes_once(store: LocalDatasetStore) -> None:
    first = store.publish("c1", make_splits(), {"run": 1})
    card_before = (Path(first.uri) / "card.json").read_bytes()

    again = store.publish("c2", make_splits(), {"run": 2})

    assert again == first
    assert store.versions() == [first.version]
    assert (Path(first.uri) / "card.json").read_bytes() == card_before  # immutable once published


def test_a_changed_split_is_a_new_version_and_the_old_one_stays_loadable(store: LocalDatasetStore) -> None:
    old_splits = make_splits()
    old = store.publish("c1", old_splits, {})
    new_splits = make_splits()
    new_splits["train"] = [*new_splits["train"], pair(30, origin="augmented")]

    new = store.publish("c2", new_splits, {})

    assert new.version != old.version
    assert sorted(store.versions()) == sorted([old.version, new.version])
    assert dumped(store.load(old)) == dumped(old_splits)
    assert len(store.load(new)["train"]) == 6


def test_moving_a_row_between_splits_changes_the_version(store: LocalDatasetStore) -> None:
    splits = make_splits()
    moved = {
        **splits,
        "train": splits["train"][:-1],
        "validation": [splits["train"][-1], *splits["validation"]],
    }
    assert store.publish("c1", splits, {}).version != store.publish("c1", moved, {}).version


def test_a_tampered_file_is_detected_on_load_and_on_republish(store: LocalDatasetStore) -> None:
    ref = store.publish("c1", make_splits(), {})
    train = Path(ref.uri) / "train.jsonl"
    lines = train.read_text().splitlines()
    row = json.loads(lines[0])
    row["vector"]["warmth"] = 9  # still a valid Pair: only the hash can tell
    train.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")

    with pytest.raises(DatasetIntegrityError, match="train.jsonl"):
        store.load(ref)
    with pytest.raises(DatasetIntegrityError):
        store.publish("c1", make_splits(), {})


def test_a_ref_must_point_at_an_existing_local_version(store: LocalDatasetStore) -> None:
    ref = store.publish("c1", make_splits(), {})
    with pytest.raises(DatasetNotFoundError):
        store.load(ref.model_copy(update={"version": "0" * 16, "data_hash": "0" * 64}))
    with pytest.raises(DatasetNotFoundError):
        store.load(ref.model_copy(update={"version": "../../etc"}))
    with pytest.raises(ValueError, match="store 'hf'"):
        store.load(DatasetRef(store="hf", name="org/x", version="abc", uri="https://x", data_hash="abc"))


def test_publish_rejects_missing_splits_and_bad_cards_without_writing(store: LocalDatasetStore) -> None:
    splits = make_splits()
    del splits["holdout"]
    with pytest.raises(ValueError, match="missing: holdout"):
        store.publish("c1", splits, {})
    with pytest.raises(TypeError):
        store.publish("c1", make_splits(), {"not_json": object()})
    assert not (store.root / DEFAULT_DATASET_NAME).exists() or list((store.root / DEFAULT_DATASET_NAME).iterdir()) == []


def test_concurrent_publishers_of_the_same_content_agree(store: LocalDatasetStore) -> None:
    refs: list[DatasetRef] = []
    barrier = threading.Barrier(4)

    def publish() -> None:
        barrier.wait()
        refs.append(store.publish("c1", make_splits(), {}))

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(refs) == 4 and len(set(refs_json := [r.model_dump_json() for r in refs])) == 1, refs_json
    assert [p.name for p in (store.root / DEFAULT_DATASET_NAME).iterdir()] == [refs[0].version]


def test_a_field_split_is_held_only_when_it_has_rows(tmp_path: Path) -> None:
    store = LocalDatasetStore(tmp_path)
    without = store.publish("c1", make_splits(), {})
    with_empty = store.publish("c1", {**make_splits(), "field": []}, {})
    assert with_empty == without  # the same version as before the field set existed
    assert "field" not in store.load(without)
    field = [pair(50), pair(51)]
    ref = store.publish("c2", {**make_splits(), "field": field}, {})
    assert ref.version != without.version and (Path(ref.uri) / "field.jsonl").is_file()
    assert dumped(store.load(ref))["field"] == dumped({"field": field})["field"]
