"""HfHubDatasetStore against the local Hub stand-in, through the real huggingface_hub and datasets clients."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi, RepoCard, hf_hub_download

from kotone_pipeline.domain.data.jsonl import read_models
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.services.datasets import OPTIONAL_SPLITS
from kotone_pipeline.services.datasets import SPLIT_FILES as ALL_SPLIT_FILES
from kotone_pipeline.services.hf_common import TRAINING_SCRIPT_PATH_IN_REPO
from kotone_pipeline.services.hf_datasets import HfDatasetStoreError, HfHubDatasetStore
from kotone_pipeline.services.local_datasets import DatasetIntegrityError, LocalDatasetStore
from kotone_pipeline_tests.hf_standin.fixtures import (
    FAKE_TRAIN_SCRIPT,
    FAST_RETRY,
    TOKEN,
    USER,
    hf_standin_fixture,  # noqa: F401 - the hf_standin fixture
    make_splits,
)
from kotone_pipeline_tests.hf_standin.server import HubStandIn, iter_secret_hits

# The files of a version without reviewed requests (an empty field split is not held).
SPLIT_FILES = {s: f for s, f in ALL_SPLIT_FILES.items() if s not in OPTIONAL_SPLITS}

REPO = f"{USER}/kotone-data"


@pytest.fixture
def store(hf_standin: HubStandIn) -> HfHubDatasetStore:
    return HfHubDatasetStore(
        REPO, token=TOKEN, endpoint=hf_standin.url, training_script=FAKE_TRAIN_SCRIPT, retry=FAST_RETRY
    )


def commits(hub: HubStandIn) -> int:
    """Commits in the dataset repo besides the initial one."""
    return len(hub.repos[("dataset", REPO)].commits) - 1


def test_publish_then_load_gives_back_the_same_rows_with_int_vectors(store, hf_standin):
    splits = make_splits()
    ref = store.publish("c1", splits, {"seed": 7})

    head = hf_standin.repos[("dataset", REPO)].branches["main"]
    assert ref.store == "hf" and ref.name == REPO
    assert ref.version == head and len(ref.version) == 40
    assert ref.uri == f"{hf_standin.url}/datasets/{REPO}/tree/{head}"
    loaded = store.load(ref)
    assert loaded == splits
    vector = loaded["train"][3].vector.as_dict()
    assert all(type(value) is int for value in vector.values())
    assert {v for rows in loaded.values() for p in rows for v in p.vector.values()} >= {0, 10}


def test_the_parquet_files_declare_the_vector_as_six_named_int8_fields(store, hf_standin, tmp_path):
    ref = store.publish("c1", make_splits(), {})
    path = hf_hub_download(
        REPO,
        "data/train.parquet",
        repo_type="dataset",
        revision=ref.version,
        endpoint=hf_standin.url,
        token=TOKEN,
        cache_dir=tmp_path,
    )
    schema = pq.read_schema(path)
    vector = schema.field("vector").type
    assert [vector.field(i).name for i in range(vector.num_fields)] == [
        "energy",
        "warmth",
        "brightness",
        "acousticness",
        "complexity",
        "nostalgia",
    ]
    assert {str(vector.field(i).type) for i in range(vector.num_fields)} == {"int8"}
    assert str(schema.field("meta").type) == "string"


def test_data_hash_is_the_local_stores_hash_of_the_same_rows(store, tmp_path):
    splits = make_splits()
    hf_ref = store.publish("c1", splits, {})
    local_ref = LocalDatasetStore(tmp_path).publish("c1", splits, {})
    assert hf_ref.data_hash == local_ref.data_hash


def test_load_pins_the_commit_even_after_main_moves_on(store):
    first = make_splits()
    ref1 = store.publish("c1", first, {})
    second = make_splits(n_train=5)
    ref2 = store.publish("c2", second, {})
    assert ref2.version != ref1.version
    assert store.load(ref1) == first
    assert store.load(ref2) == second


def test_identical_content_for_the_same_cycle_reuses_the_commit(store, hf_standin):
    splits = make_splits()
    ref1 = store.publish("c1", splits, {"seed": 1})
    ref2 = store.publish("c1", make_splits(), {"seed": 1})
    assert ref2 == ref1
    assert commits(hf_standin) == 1
    assert hf_standin.count("repo.commit") == 1


def test_a_fresh_store_object_also_finds_the_existing_publication(store, hf_standin):
    ref1 = store.publish("c1", make_splits(), {})
    again = HfHubDatasetStore(
        REPO, token=TOKEN, endpoint=hf_standin.url, training_script=FAKE_TRAIN_SCRIPT, retry=FAST_RETRY
    )
    assert again.publish("c1", make_splits(), {}) == ref1
    assert commits(hf_standin) == 1


def test_changed_rows_or_another_cycle_make_a_new_commit(store, hf_standin):
    splits = make_splits()
    ref1 = store.publish("c1", splits, {})
    changed = make_splits()
    changed["train"][0] = changed["train"][0].model_copy(update={"text": "a different commission text"})
    ref2 = store.publish("c1", changed, {})
    ref3 = store.publish("c2", splits, {})
    assert len({ref1.version, ref2.version, ref3.version}) == 3
    assert ref3.data_hash == ref1.data_hash
    assert commits(hf_standin) == 3


@pytest.mark.parametrize("bad", [7.5, "7", 11])
def test_invalid_rows_are_refused_before_anything_is_uploaded(store, hf_standin, bad):
    splits = make_splits()
    row = splits["validation"][1].model_dump(mode="json")
    row["vector"]["warmth"] = bad
    splits["validation"][1] = row  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"validation\[1\]: .*warmth"):
        store.publish("c1", splits, {})
    assert not any(r.route in ("repo.commit", "repo.preupload", "lfs.put") for r in hf_standin.requests)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_model_constructed_row_gets_no_free_pass(store, hf_standin):
    splits = make_splits()
    bad = splits["train"][0].model_copy()
    bad.vector = bad.vector.model_construct(**{**bad.vector.as_dict(), "energy": 2.5})
    splits["train"][0] = bad
    with pytest.raises(ValueError, match=r"train\[0\]"):
        store.publish("c1", splits, {})
    assert hf_standin.count("repo.commit") == 0


def test_integral_floats_are_stored_as_ints(store):
    splits = make_splits()
    row = splits["test"][0].model_dump(mode="json")
    row["vector"] = {k: float(v) for k, v in row["vector"].items()}
    splits["test"][0] = row  # type: ignore[call-overload]
    ref = store.publish("c1", splits, {})
    vector = store.load(ref)["test"][0].vector.as_dict()
    assert all(type(v) is int for v in vector.values())


def test_parts_outside_the_four_slots_are_refused(store):
    splits = make_splits()
    splits["train"][1] = splits["train"][1].model_copy(update={"parts": {"style": "s1", "tempo": "fast"}})
    with pytest.raises(ValueError, match="unknown slot.*tempo"):
        store.publish("c1", splits, {})


def test_missing_split_is_refused(store):
    splits = make_splits()
    del splits["holdout"]
    with pytest.raises(ValueError, match="missing: holdout"):
        store.publish("c1", splits, {})


def test_materialize_local_writes_the_pinned_split_files(store, tmp_path):
    splits = make_splits()
    ref = store.publish("c1", splits, {})
    store.publish("c2", make_splits(n_train=4), {})  # main moves on; the ref stays pinned
    dest = store.materialize_local(ref, tmp_path / "ds")
    assert sorted(p.name for p in dest.iterdir()) == sorted(SPLIT_FILES.values())
    for split, name in SPLIT_FILES.items():
        assert read_models(dest / name, Pair).rows == splits[split]


def test_materialized_files_are_what_the_training_script_finds(store, hf_standin, tmp_path):
    """train_lora.py downloads ``*.jsonl`` of the pinned commit and looks for the split files in it."""
    ref = store.publish("c1", make_splits(), {})
    listed = HfApi(endpoint=hf_standin.url, token=TOKEN).list_repo_files(
        REPO, repo_type="dataset", revision=ref.version
    )
    jsonl = sorted(f for f in listed if f.endswith(".jsonl"))
    assert sorted(Path(f).name for f in jsonl) == sorted(SPLIT_FILES.values())
    assert len({Path(f).parent for f in jsonl}) == 1


def test_the_training_script_is_published_in_the_same_commit(store, hf_standin, tmp_path):
    ref = store.publish("c1", make_splits(), {})
    url = store.file_url(ref, TRAINING_SCRIPT_PATH_IN_REPO)
    assert url == f"{hf_standin.url}/datasets/{REPO}/resolve/{ref.version}/{TRAINING_SCRIPT_PATH_IN_REPO}"
    _, blob = hf_standin.file_at("dataset", REPO, ref.version, TRAINING_SCRIPT_PATH_IN_REPO)
    assert blob.data == FAKE_TRAIN_SCRIPT.read_bytes()


def test_a_changed_training_script_makes_a_new_commit(store, hf_standin, tmp_path):
    ref1 = store.publish("c1", make_splits(), {})
    script = tmp_path / "train.py"
    script.write_text("print('v2')\n")
    store.training_script = script
    ref2 = store.publish("c1", make_splits(), {})
    assert ref2.version != ref1.version and ref2.data_hash == ref1.data_hash


def test_dataset_card_records_cycle_counts_columns_hash_and_parameters(store, hf_standin):
    ref = store.publish("c1", make_splits(n_train=6, n_eval=2), {"teacher_seed": 42, "add_ratio": 0.2})
    _, blob = hf_standin.file_at("dataset", REPO, ref.version, "README.md")
    card = RepoCard(blob.data.decode())
    configs = card.data.to_dict()["configs"][0]["data_files"]
    assert {c["split"] for c in configs} == set(SPLIT_FILES)
    text = card.text
    assert "cycle `c1`" in text and ref.data_hash in text
    assert "| train | 6 |" in text and "| holdout | 2 |" in text
    assert "| vector |" in text and "int8" in text
    assert "| teacher_seed | `42` |" in text
    assert store.card(ref)["splits"]["train"]["rows"] == 6


def test_commit_answered_500_after_it_happened_is_found_not_repeated(store, hf_standin):
    hf_standin.faults.fail_after("repo.commit", 500)
    ref = store.publish("c1", make_splits(), {})
    assert commits(hf_standin) == 1
    assert ref.version == hf_standin.repos[("dataset", REPO)].branches["main"]
    assert store.publish("c1", make_splits(), {}) == ref
    assert commits(hf_standin) == 1


def test_commit_that_failed_is_reported_transient_and_a_later_publish_works(store, hf_standin):
    hf_standin.faults.fail("repo.commit", 503)
    with pytest.raises(HfDatasetStoreError) as err:
        store.publish("c1", make_splits(), {})
    assert err.value.transient is True
    assert commits(hf_standin) == 0
    ref = store.publish("c1", make_splits(), {})
    assert commits(hf_standin) == 1 and store.load(ref) == make_splits()


def test_reads_are_retried_on_503_within_the_bound(store, hf_standin):
    ref = store.publish("c1", make_splits(), {})
    hf_standin.faults.fail("repo.paths_info", 503, times=FAST_RETRY.attempts - 1)
    assert store.publish("c1", make_splits(), {}) == ref
    hf_standin.faults.fail("repo.paths_info", 503, times=FAST_RETRY.attempts)
    with pytest.raises(HfDatasetStoreError, match="HTTP 503") as err:
        store.publish("c1", make_splits(), {})
    assert err.value.transient is True
    assert commits(hf_standin) == 1


def test_a_tampered_ref_is_detected(store):
    ref = store.publish("c1", make_splits(), {})
    with pytest.raises(DatasetIntegrityError):
        store.load(ref.model_copy(update={"data_hash": "0" * 64}))


def test_unknown_revision_is_a_permanent_error(store):
    ref = store.publish("c1", make_splits(), {})
    with pytest.raises(HfDatasetStoreError) as err:
        store.load(ref.model_copy(update={"version": "f" * 40}))
    assert err.value.transient is False


def test_the_token_never_leaves_the_authorization_header(store, hf_standin):
    card = {"note": f"accidentally pasted {TOKEN}"}
    ref = store.publish("c1", make_splits(), card)
    store.load(ref)
    assert list(iter_secret_hits(hf_standin, TOKEN)) == []
    assert TOKEN not in json.dumps(store.card(ref))
    # The scan is not vacuous: the token did travel, in the Authorization header.
    assert any(r.header("Authorization") == f"Bearer {TOKEN}" for r in hf_standin.requests)
