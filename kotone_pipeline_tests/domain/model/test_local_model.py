"""The local model learns word cues, rounds half-up within 0..10, and round-trips through save/load."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline, make_union

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair, Vector
from kotone_pipeline.domain.model.local_model import (
    ESTIMATOR_FILE,
    META_FILE,
    FastCountVectorizer,
    LocalTextModel,
    ModelLoadError,
    SourceModel,
    parse_hparams,
    to_dim_values,
    training_data_hash,
)
from kotone_pipeline.domain.model.predictor import PredictInput, parse_completion

# One cue word per dim and level: a text states each dim's level, so a bag-of-words model can learn it.
_LOW = {"energy": "still", "warmth": "cold", "brightness": "dark", "acousticness": "synthetic",
        "complexity": "bare", "nostalgia": "futuristic"}  # fmt: skip
_HIGH = {"energy": "driving", "warmth": "cosy", "brightness": "sparkling", "acousticness": "wooden",
         "complexity": "layered", "nostalgia": "retro"}  # fmt: skip
_LEVELS = {0: "utterly {low}", 2: "{low}", 5: "", 8: "{high}", 10: "utterly {high}"}


def _cue_pairs(n: int, seed: int, source_type: str = "request_text") -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        values = [rng.choice(list(_LEVELS)) for _ in DIMS]
        words = [_LEVELS[v].format(low=_LOW[d], high=_HIGH[d]) for d, v in zip(DIMS, values, strict=True)]
        text = f"tune {i}: " + ", ".join(w for w in words if w) + " please"
        vector = Vector.from_values(values)
        pairs.append(Pair(group_id=f"g{seed}-{i}", source_type=source_type, text=text, vector=vector))
    return pairs


def _mae(model: LocalTextModel, pairs: list[Pair]) -> float:
    preds = model.predict([PredictInput(p.text, p.source_type) for p in pairs])
    errors = [
        abs(a - b)
        for p, q in zip(pairs, preds, strict=True)
        for a, b in zip(p.vector.values(), q.vector.values(), strict=True)
    ]
    return sum(errors) / len(errors)


@pytest.fixture(scope="module")
def fitted() -> tuple[LocalTextModel, list[Pair]]:
    train = _cue_pairs(300, seed=1) + _cue_pairs(60, seed=2, source_type="rule_prompt")
    return LocalTextModel(model_id="test-local").fit(train, LocalHyperParams(alpha=0.3)), train


def test_learns_cues_far_better_than_a_constant(fitted: tuple[LocalTextModel, list[Pair]]) -> None:
    model, _ = fitted
    test = _cue_pairs(100, seed=99)
    # The constant 5 is off by 3.4 on average for levels drawn from {0,2,5,8,10}; the cues are exact.
    constant_mae = sum(abs(v - 5) for p in test for v in p.vector.values()) / (len(test) * len(DIMS))
    assert constant_mae > 2.5
    assert _mae(model, test) < 0.5


def test_predictions_are_valid_compact_json_in_input_order(fitted: tuple[LocalTextModel, list[Pair]]) -> None:
    model, _ = fitted
    inputs = [
        PredictInput("utterly driving, utterly sparkling please", "request_text"),
        PredictInput("utterly still, utterly dark please", "request_text"),
    ]
    loud, quiet = model.predict(inputs)
    assert loud.vector is not None and quiet.vector is not None
    assert loud.vector.energy > quiet.vector.energy and loud.vector.brightness > quiet.vector.brightness
    for pred in (loud, quiet):
        assert parse_completion(pred.raw) == pred.vector
        assert " " not in pred.raw
        assert pred.latency_ms > 0


def test_unseen_source_type_falls_back_to_the_largest_sub_model(
    fitted: tuple[LocalTextModel, list[Pair]],
) -> None:
    model, _ = fitted
    text = "utterly driving please"
    (unknown,) = model.predict([PredictInput(text, "voice_memo")])
    (request,) = model.predict([PredictInput(text, "request_text")])
    assert unknown.vector == request.vector


def test_predict_empty_and_unfitted() -> None:
    assert LocalTextModel().predict([]) == []
    with pytest.raises(RuntimeError, match="not fitted"):
        LocalTextModel().predict([PredictInput("x", "request_text")])
    with pytest.raises(ValueError, match="zero training pairs"):
        LocalTextModel().fit([])


def test_to_dim_values_clips_and_rounds_half_up() -> None:
    raw = np.array([[-3.2, 0.49, 0.5, 2.5, 9.5, 12.0]])
    # Half-up: 0.5 -> 1 and 2.5 -> 3 (banker's rounding would give 0 and 2); clipping happens first.
    assert to_dim_values(raw).tolist() == [[0, 0, 1, 3, 10, 10]]


def test_save_load_round_trip_keeps_predictions_and_metadata(
    fitted: tuple[LocalTextModel, list[Pair]], tmp_path
) -> None:
    model, train = fitted
    model.save(tmp_path / "m", metrics={"validation": {"vector_mae": 0.1}})
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["hparams"]["alpha"] == 0.3
    assert meta["train_rows"] == 360
    assert meta["train_rows_by_source_type"] == {"request_text": 300, "rule_prompt": 60}
    assert meta["training_data_hash"] == training_data_hash(train)
    assert meta["metrics"]["validation"]["vector_mae"] == 0.1
    assert {"scikit-learn", "numpy", "python"} <= set(meta["library_versions"])
    assert meta["created_at"]

    loaded = LocalTextModel.load(tmp_path / "m")
    inputs = [PredictInput(p.text, p.source_type) for p in _cue_pairs(20, seed=5)]
    assert [p.vector for p in loaded.predict(inputs)] == [p.vector for p in model.predict(inputs)]
    assert loaded.model_id == "test-local"
    assert loaded.hparams == LocalHyperParams(alpha=0.3)


def test_training_data_hash_ignores_order_but_not_labels() -> None:
    pairs = _cue_pairs(5, seed=3)
    changed = [pairs[0].model_copy(update={"vector": Vector.neutral()}), *pairs[1:]]
    assert training_data_hash(pairs) == training_data_hash(list(reversed(pairs)))
    assert training_data_hash(pairs) != training_data_hash(changed)


def test_a_model_saved_before_the_domain_split_still_loads(fitted: tuple[LocalTextModel, list[Pair]], tmp_path) -> None:
    """Its pickle names classes at the old flat paths (kotone_pipeline.domain.source_model, ...)."""
    import sys

    import joblib

    model, _ = fitted
    model.save(tmp_path / "m")
    estimator = tmp_path / "m" / ESTIMATOR_FILE
    # Protocol 0 writes each class as "module\nname" text, so the paths can be put back as they were.
    joblib.dump(joblib.load(estimator), estimator, protocol=0)
    raw = estimator.read_bytes()
    for trade in ("model", "requests", "data"):
        raw = raw.replace(f"kotone_pipeline.domain.{trade}.".encode(), b"kotone_pipeline.domain.")
    assert b"kotone_pipeline.domain.source_model\n" in raw
    estimator.write_bytes(raw)
    loaded = LocalTextModel.load(tmp_path / "m")
    inputs = [PredictInput(p.text, p.source_type) for p in _cue_pairs(10, seed=7)]
    assert [p.vector for p in loaded.predict(inputs)] == [p.vector for p in model.predict(inputs)]
    assert "kotone_pipeline.domain.source_model" not in sys.modules  # the old names were only lent


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: None, "model directory not found"),
        (lambda d: d.mkdir(), "model.json missing"),
        (lambda d: (d.mkdir(), (d / META_FILE).write_text("{not json")), "corrupt model metadata"),
        (lambda d: (d.mkdir(), (d / META_FILE).write_text('{"kind": "other"}')), "not a kotone-local"),
    ],
)
def test_load_rejects_missing_or_foreign_dirs(tmp_path, damage, message: str) -> None:
    target = tmp_path / "model"
    damage(target)
    with pytest.raises(ModelLoadError, match=message):
        LocalTextModel.load(target)


def test_load_rejects_a_corrupt_or_missing_estimator(fitted: tuple[LocalTextModel, list[Pair]], tmp_path) -> None:
    model, _ = fitted
    model.save(tmp_path / "m")
    (tmp_path / "m" / ESTIMATOR_FILE).write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="corrupt estimator"):
        LocalTextModel.load(tmp_path / "m")
    (tmp_path / "m" / ESTIMATOR_FILE).unlink()
    with pytest.raises(ModelLoadError, match="estimator.joblib missing"):
        LocalTextModel.load(tmp_path / "m")


def test_parse_hparams() -> None:
    assert parse_hparams(None) == LocalHyperParams()
    assert parse_hparams('{"alpha": 2, "use_char": false}') == LocalHyperParams(alpha=2, use_char=False)
    with pytest.raises(ValueError, match="unknown key.*learning_rate"):
        parse_hparams('{"learning_rate": 0.1}')
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_hparams("{alpha: 1}")
    with pytest.raises(ValueError, match="JSON object"):
        parse_hparams("[1]")
    with pytest.raises(ValueError, match="word_ngram_max"):
        parse_hparams('{"word_ngram_max": 9}')


_TEXTS = [
    "Banana  bandana, banana!",
    "a very very slow tune",
    "naïve café in the rain",
    "",
    "x",
    "Compose a track:\nstyle: Lo-fi (style_lofi)\nmood: Calm",
]


@pytest.mark.parametrize(
    "params",
    [
        {"analyzer": "char_wb", "ngram_range": (2, 5)},
        {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 2},  # the fast fit, then sklearn's pruning
        {"analyzer": "char_wb", "ngram_range": (1, 3), "max_df": 0.5, "lowercase": False},
        {"analyzer": "word", "ngram_range": (1, 2), "token_pattern": r"(?u)\b\w+\b"},
        {"analyzer": "char", "ngram_range": (1, 3)},  # not sped up: the parent's transform
    ],
)
def test_fast_counts_equal_sklearn_counts(params: dict) -> None:
    fitted_on = _TEXTS[:3] + _TEXTS[5:]
    reference = CountVectorizer(**params).fit(fitted_on)
    fast = FastCountVectorizer(**params).fit(fitted_on)
    assert fast.vocabulary_ == reference.vocabulary_
    assert np.array_equal(
        FastCountVectorizer(**params).fit_transform(fitted_on).toarray(), reference.transform(fitted_on).toarray()
    )
    unseen = [*_TEXTS, "banana nana zzz café", "very very very"]
    for _ in range(2):  # the second pass runs on the word cache
        assert np.array_equal(fast.transform(unseen).toarray(), reference.transform(unseen).toarray())


def test_source_model_matches_the_sklearn_pipeline_it_replaces() -> None:
    hp = LocalHyperParams(alpha=0.7, word_ngram_max=2, char_ngram_max=4)
    train = _cue_pairs(80, seed=11)
    texts, y = [p.text for p in train], np.array([p.vector.values() for p in train], dtype=float)
    reference = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True),
        ),
        Ridge(alpha=0.7, solver="lsqr", tol=1e-12),  # converged: the exact ridge solution
    ).fit(texts, y)
    ours = SourceModel(hp).fit(texts, y)
    unseen = [p.text for p in _cue_pairs(30, seed=12)] + ["", "zzz"]
    # Ours stops at fit_ridge's default tolerance (see test_ridge): within a hundredth of exact.
    np.testing.assert_allclose(ours.predict(unseen), reference.predict(unseen), atol=0.01)


def test_default_model_uses_every_feature_block_and_records_its_encoder(fitted) -> None:
    model, _ = fitted
    assert model.hparams is not None and model.hparams.use_encoder and model.hparams.use_lexicon
    assert model.encoder_info is not None and model.encoder_info["setting"] == "default"
    assert model.encoder_info["dim"] == 384
    assert model._models["request_text"].embedded  # requests: embeddings + the lexicon's reading


def test_a_saved_model_keeps_its_encoder_and_lexicon_whatever_the_environment_says(
    fitted, tmp_path, monkeypatch
) -> None:
    from kotone_pipeline.domain.model.embedding_cache import clear_encoders
    from kotone_pipeline.domain.model.encoder import EncoderError

    model, pairs = fitted
    inputs = [PredictInput(p.text, p.source_type) for p in pairs[:20]]
    saved = model.save(tmp_path / "m")
    monkeypatch.setenv("KOTONE_ENCODER", str(tmp_path / "no-such-encoder"))  # not the one it was trained with
    clear_encoders()
    loaded = LocalTextModel.load(saved)
    np.testing.assert_array_equal(loaded.predict_values(inputs), model.predict_values(inputs))
    assert loaded.lexicon_reader is not None and len(loaded.lexicon_reader.lexicon) == len(model.lexicon_reader.lexicon)

    meta = json.loads((saved / "model.json").read_text())
    meta["encoder"]["key"] = "another-encoder-000000000000"
    (saved / "model.json").write_text(json.dumps(meta))
    with pytest.raises(EncoderError, match="trained with encoder another-encoder"):
        LocalTextModel.load(saved).predict_values(inputs)


def test_prepare_embeddings_leaves_every_request_text_in_the_disk_cache(tmp_path, monkeypatch) -> None:
    import numpy as np

    from kotone_pipeline.domain.model.embedding_cache import get_encoder, prepare_embeddings

    monkeypatch.setenv("KOTONE_EMBEDDING_CACHE", str(tmp_path / "cache"))
    encoder = get_encoder("default")
    remembered = "a text this process embedded while the cache file was elsewhere"
    encoder._remember({remembered: np.full(encoder.dim, 0.5, dtype=np.float32)})  # in memory only
    texts = [("request_text", remembered), ("request_text", "rainy window, soft piano"), ("rule_prompt", "x")]

    first = prepare_embeddings(texts)
    assert first["texts"] == 2 and first["embedded"] == 1  # the rule prompt is never embedded
    assert encoder.cache is not None
    assert set(encoder.cache.get_many([remembered, "rainy window, soft piano"])) == {
        remembered,
        "rainy window, soft piano",
    }
    assert prepare_embeddings(texts)["embedded"] == 0  # all on disk now
