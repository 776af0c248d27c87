"""Local scikit-learn model: TF-IDF word + char n-grams into a multi-output Ridge, one per source_type.

Request texts and rule prompts have very different vocabularies and label structure, so each
source_type gets its own vectorizer and regressor (measured better than one shared model with a
source_type token); an input of a source_type never seen in training uses the largest sub-model.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import scipy
import sklearn
from pydantic import ValidationError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import FeatureUnion, Pipeline

from kotone_pipeline.domain.dims import DIMS, MAX_VALUE, MIN_VALUE
from kotone_pipeline.domain.jsonl import atomic_writer, describe_validation_error, write_json
from kotone_pipeline.domain.predictor import PredictInput, Prediction, Predictor, format_completion
from kotone_pipeline.domain.schemas import LocalHyperParams, Pair, Vector

MODEL_KIND = "kotone-local-text-model"
FORMAT_VERSION = 1
ESTIMATOR_FILE = "estimator.joblib"
META_FILE = "model.json"


class ModelLoadError(ValueError):
    """A model directory is missing, incomplete or corrupt."""


def training_data_hash(pairs: Iterable[Pair]) -> str:
    """Order-independent hash of what the model learns from (id, source_type, text, vector)."""
    lines = sorted(
        f"{p.id}\x1f{p.source_type}\x1f{p.text}\x1f{','.join(map(str, p.vector.values()))}" for p in pairs
    )
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return f"sha256:{digest.hexdigest()}"


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


def to_dim_values(raw: np.ndarray) -> np.ndarray:
    """Clip to 0..10 and round half-up (floor(x + 0.5), as ``round_half_up`` does), vectorised."""
    return np.floor(np.clip(raw, MIN_VALUE, MAX_VALUE) + 0.5).astype(np.int64)


def parse_hparams(text: str | None) -> LocalHyperParams:
    """``--hparams`` JSON object -> LocalHyperParams; ValueError naming the bad or unknown key."""
    if text is None or not text.strip():
        return LocalHyperParams()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--hparams is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--hparams must be a JSON object, got {type(data).__name__}")
    allowed = ", ".join(LocalHyperParams.model_fields)
    unknown = sorted(set(data) - set(LocalHyperParams.model_fields))
    if unknown:
        raise ValueError(f"--hparams: unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
    try:
        return LocalHyperParams.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"--hparams: {describe_validation_error(exc)}") from exc


def _pipeline(hp: LocalHyperParams) -> Pipeline:
    features: list[tuple[str, TfidfVectorizer]] = [
        (
            "word",
            TfidfVectorizer(
                analyzer="word",
                ngram_range=(1, hp.word_ngram_max),
                min_df=hp.min_df,
                sublinear_tf=True,
                token_pattern=r"(?u)\b\w+\b",
                dtype=np.float32,
            ),
        )
    ]
    if hp.use_char:
        features.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(2, hp.char_ngram_max),
                    min_df=hp.min_df,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            )
        )
    return Pipeline([("features", FeatureUnion(features)), ("ridge", Ridge(alpha=hp.alpha))])


class LocalTextModel(Predictor):
    """Text -> six dims. ``fit`` then ``predict``; ``save``/``load`` a model directory."""

    def __init__(self, model_id: str = "local") -> None:
        self.model_id = model_id
        self.hparams: LocalHyperParams | None = None
        self.meta: dict[str, Any] = {}
        self._models: dict[str, Pipeline] = {}
        self._fallback: str | None = None

    @property
    def fitted(self) -> bool:
        return bool(self._models)

    def fit(self, pairs: Sequence[Pair], hparams: LocalHyperParams | None = None) -> LocalTextModel:
        hp = hparams or LocalHyperParams()
        if not pairs:
            raise ValueError("cannot fit the local model on zero training pairs")
        started = time.perf_counter()
        by_source: dict[str, list[Pair]] = {}
        for pair in pairs:
            by_source.setdefault(pair.source_type, []).append(pair)
        models: dict[str, Pipeline] = {}
        for source_type, rows in sorted(by_source.items()):
            pipeline = _pipeline(hp)
            y = np.array([p.vector.values() for p in rows], dtype=np.float64)
            try:
                pipeline.fit([p.text for p in rows], y)
            except ValueError as exc:
                # Typically min_df pruning every term away on a small subset.
                raise ValueError(
                    f"cannot fit the {source_type} model on {len(rows)} row(s) with {hp!r}: {exc}"
                ) from exc
            models[source_type] = pipeline
        self._models = models
        self._fallback = max(by_source, key=lambda s: (len(by_source[s]), s))
        self.hparams = hp
        self.meta = {
            "train_rows": len(pairs),
            "train_rows_by_source_type": {s: len(r) for s, r in sorted(by_source.items())},
            "training_data_hash": training_data_hash(pairs),
            "fit_seconds": round(time.perf_counter() - started, 4),
        }
        return self

    def predict_values(self, inputs: Sequence[PredictInput]) -> np.ndarray:
        """Integer predictions, shape (n, 6), in input order (no per-row objects: the fast path)."""
        if not self._models:
            raise RuntimeError("the local model is not fitted; call fit() or load() first")
        out = np.empty((len(inputs), len(DIMS)), dtype=np.int64)
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(inputs):
            key = item.source_type if item.source_type in self._models else self._fallback
            groups.setdefault(key, []).append(i)  # type: ignore[arg-type]
        for source_type, idx in groups.items():
            raw = self._models[source_type].predict([inputs[i].text for i in idx])
            out[idx] = to_dim_values(np.asarray(raw).reshape(len(idx), len(DIMS)))
        return out

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        if not inputs:
            return []
        started = time.perf_counter()
        values = self.predict_values(inputs)
        vectors = [Vector.from_values(row) for row in values.tolist()]
        raws = [format_completion(v) for v in vectors]
        latency_ms = (time.perf_counter() - started) * 1000 / len(inputs)
        return [
            Prediction(vector=v, raw=r, latency_ms=latency_ms) for v, r in zip(vectors, raws, strict=True)
        ]

    def save(self, directory: Path | str, metrics: dict[str, Any] | None = None) -> Path:
        """Write ``estimator.joblib`` then ``model.json`` (written last: its presence marks a whole model)."""
        if not self._models or self.hparams is None:
            raise RuntimeError("cannot save an unfitted local model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_writer(directory / ESTIMATOR_FILE, "wb") as handle:
            joblib.dump({"models": self._models, "fallback": self._fallback}, handle, compress=3)
        meta = {
            "kind": MODEL_KIND,
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "hparams": self.hparams.model_dump(),
            "source_types": sorted(self._models),
            "fallback_source_type": self._fallback,
            **self.meta,
            "library_versions": library_versions(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if metrics is not None:
            meta["metrics"] = metrics
        write_json(directory / META_FILE, meta)
        self.meta = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "hparams")}
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> LocalTextModel:
        """Load a saved model. The estimator is a pickle: only load directories you trust."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelLoadError(f"{directory}: model directory not found")
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise ModelLoadError(f"{directory}: not a local model directory ({META_FILE} missing)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{meta_path}: corrupt model metadata ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
            raise ModelLoadError(f"{meta_path}: not a {MODEL_KIND} (kind={meta.get('kind')!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelLoadError(
                f"{meta_path}: format_version {meta.get('format_version')!r} is not supported "
                f"(expected {FORMAT_VERSION})"
            )
        try:
            hparams = LocalHyperParams.model_validate(meta.get("hparams", {}))
        except ValidationError as exc:
            raise ModelLoadError(f"{meta_path}: bad hparams ({exc.errors()[0]['msg']})") from exc
        estimator_path = directory / ESTIMATOR_FILE
        if not estimator_path.is_file():
            raise ModelLoadError(f"{directory}: {ESTIMATOR_FILE} missing")
        try:
            state = joblib.load(estimator_path)
            models, fallback = state["models"], state["fallback"]
        except Exception as exc:  # unpickling a damaged file can fail in many ways
            reason = f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(f"{estimator_path}: corrupt estimator ({reason})") from exc
        if not isinstance(models, dict) or fallback not in models:
            raise ModelLoadError(f"{estimator_path}: unexpected estimator content")
        model = cls(model_id=str(meta.get("model_id", "local")))
        model._models, model._fallback, model.hparams = models, fallback, hparams
        model.meta = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "hparams")}
        return model
