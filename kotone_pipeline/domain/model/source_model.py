"""The first part's building blocks: text features (TF-IDF without sklearn's per-call checks) and the ridge
per source type (``SourceModel``), with the helpers a saved model and the correction share.

They live apart from ``local_model`` so that the correction (``correction.py``) and the two-part model can
both build on them without importing each other.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import joblib
import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
from pydantic import ValidationError
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import Ridge

from kotone_pipeline.domain.data.dims import MAX_VALUE, MIN_VALUE
from kotone_pipeline.domain.data.jsonl import describe_validation_error
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair, Vector
from kotone_pipeline.domain.model.predictor import format_completion
from kotone_pipeline.domain.model.ridge import fit_ridge


class ModelLoadError(ValueError):
    """A model directory is missing, incomplete or corrupt."""


def training_data_hash(pairs: Iterable[Pair]) -> str:
    """Order-independent hash of what the model learns from (id, source_type, text, vector)."""
    lines = sorted(f"{p.id}\x1f{p.source_type}\x1f{p.text}\x1f{','.join(map(str, p.vector.values()))}" for p in pairs)
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


@lru_cache(maxsize=65_536)
def _vector_and_completion(values: tuple[int, ...]) -> tuple[Vector, str]:
    # Vectors are frozen, so one instance per distinct prediction can be shared; building them
    # (and their JSON) would otherwise cost about as much as predicting.
    vector = Vector.from_values(values)
    return vector, format_completion(vector)


class FastCountVectorizer(CountVectorizer):
    """``CountVectorizer`` whose ``transform`` gives the same counts several times faster.

    sklearn counts n-gram by n-gram in Python. For ``char_wb``, n-grams never cross a word boundary,
    so counts = (texts x words) @ (words x n-grams): each distinct word is analysed once (and cached
    across calls) and a sparse product sums the repeats in C. For ``word``, n-grams are looked up in
    one pass. Indices within a row may come out unsorted (still no duplicates), which nothing
    downstream minds. Fitting is the parent's."""

    _CACHE_LIMIT = 200_000

    def transform(self, raw_documents: Iterable[str]) -> sp.csr_matrix:
        if isinstance(raw_documents, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        if self.binary or self.analyzer not in ("word", "char_wb"):
            return super().transform(raw_documents)
        self._check_vocabulary()
        docs = list(raw_documents)
        if self.analyzer == "char_wb":
            return self._char_wb_counts(docs)
        analyze, vocabulary = self.build_analyzer(), self.vocabulary_
        cols: list[int] = []
        indptr = [0]
        for doc in docs:
            cols.extend([vocabulary[gram] for gram in analyze(doc) if gram in vocabulary])
            indptr.append(len(cols))
        counts = sp.csr_matrix(
            (np.ones(len(cols), dtype=self.dtype), np.array(cols, dtype=np.int32), np.array(indptr)),
            shape=(len(docs), len(vocabulary)),
        )
        counts.sum_duplicates()
        return counts

    def fit_transform(self, raw_documents: Iterable[str], y: Any = None) -> sp.csr_matrix:
        """``char_wb`` without a given vocabulary: the vocabulary is every n-gram of every distinct word
        (sorted, as sklearn numbers it), then the fast counts, then sklearn's own min_df/max_df pruning.
        The same matrix and vocabulary as the parent (tested), without analysing every word of every text."""
        if (
            isinstance(raw_documents, str)
            or self.analyzer != "char_wb"
            or self.binary
            or self.vocabulary is not None
            or self.max_features is not None
        ):
            return super().fit_transform(raw_documents, y)
        self._validate_ngram_range()
        self._warn_for_unused_params()
        self._validate_vocabulary()
        docs = list(raw_documents)
        preprocess, decode = self.build_preprocessor(), self.decode
        words = {word for doc in docs for word in preprocess(decode(doc)).split()}
        grams = {gram for word in words for gram in self._char_wb_ngrams(word)}
        if not grams:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        self.vocabulary_ = {gram: index for index, gram in enumerate(sorted(grams))}
        self._word_cache = {}
        counts = self._char_wb_counts(docs)
        n_doc = len(docs)
        max_df = self.max_df if isinstance(self.max_df, int) else self.max_df * n_doc
        min_df = self.min_df if isinstance(self.min_df, int) else self.min_df * n_doc
        if max_df < min_df:
            raise ValueError("max_df corresponds to < documents than min_df")
        if max_df < n_doc or min_df > 1:
            vocabulary = dict(self.vocabulary_)
            counts = self._limit_features(counts, vocabulary, max_df, min_df, None)
            self.vocabulary_ = vocabulary
            self._word_cache = {}  # the cached indices were into the unpruned vocabulary
        return counts

    def _char_wb_counts(self, docs: list[str]) -> sp.csr_matrix:
        cache: dict[str, np.ndarray] | None = getattr(self, "_word_cache", None)
        if cache is None or len(cache) > self._CACHE_LIMIT:
            cache = self._word_cache = {}
        preprocess, decode = self.build_preprocessor(), self.decode
        word_ids: dict[str, int] = {}  # this batch's distinct words
        doc_words: list[int] = []
        doc_indptr = [0]
        for doc in docs:
            for word in preprocess(decode(doc)).split():
                index = word_ids.get(word)
                if index is None:
                    index = word_ids[word] = len(word_ids)
                doc_words.append(index)
            doc_indptr.append(len(doc_words))
        grams = [cache.get(word) for word in word_ids]
        for word, index in word_ids.items():
            if grams[index] is None:
                grams[index] = cache[word] = self._word_gram_indices(word)
        texts_words = sp.csr_matrix(
            (
                np.ones(len(doc_words), dtype=self.dtype),
                np.array(doc_words, dtype=np.int32),
                np.array(doc_indptr),
            ),
            shape=(len(docs), len(word_ids)),
        )
        words_grams = sp.csr_matrix(
            (
                np.ones(sum(len(g) for g in grams), dtype=self.dtype),
                np.concatenate(grams) if grams else np.empty(0, dtype=np.int32),
                np.concatenate([[0], np.cumsum([len(g) for g in grams], dtype=np.int64)]),
            ),
            shape=(len(word_ids), len(self.vocabulary_)),
        )
        return (texts_words @ words_grams).tocsr()

    def _word_gram_indices(self, word: str) -> np.ndarray:
        """Vocabulary indices of one word's char_wb n-grams, repeats kept (they are counts)."""
        vocabulary = self.vocabulary_
        found = [vocabulary.get(gram) for gram in self._char_wb_ngrams(word)]
        return np.array([i for i in found if i is not None], dtype=np.int32)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_word_cache", None)  # a per-process speed-up, not part of the model
        return state


class SourceModel:
    """TF-IDF blocks (each L2-normalised, then concatenated) and optionally an embedding block, into one
    multi-output Ridge.

    The same maths as a ``Pipeline`` of a ``FeatureUnion`` of ``TfidfVectorizer`` and a ``Ridge``,
    without their per-call validation, which costs more than the prediction itself for one text.
    Embeddings are passed in (computed once for all rows by the caller, through the cache)."""

    def __init__(self, hp: LocalHyperParams, embedded: bool = False) -> None:
        self.embedded = embedded  # a dense block (embeddings, lexicon readings) follows the TF-IDF blocks
        token_pattern = r"(?u)\b\w+\b"  # keep one-letter words ("a", "I"): they carry tone
        self.blocks: list[tuple[FastCountVectorizer, TfidfTransformer]] = [
            (
                FastCountVectorizer(ngram_range=(1, hp.word_ngram_max), min_df=hp.min_df, token_pattern=token_pattern),
                TfidfTransformer(sublinear_tf=True),
            )
        ]
        if hp.use_char:
            self.blocks.append(
                (
                    FastCountVectorizer(analyzer="char_wb", ngram_range=(2, hp.char_ngram_max), min_df=hp.min_df),
                    TfidfTransformer(sublinear_tf=True),
                )
            )
        # Holds the fitted coef_/intercept_ (what predict reads); fitted by ``ridge.fit_ridge``, which
        # shares each pass over the data between the six dims (see there).
        self.ridge = Ridge(alpha=hp.alpha)

    def fit(self, texts: Sequence[str], y: np.ndarray, embeddings: np.ndarray | None = None) -> SourceModel:
        blocks = [tfidf.fit_transform(counts.fit_transform(texts)) for counts, tfidf in self.blocks]
        if self.embedded and embeddings is None:
            raise ValueError("this source model uses embeddings; pass them to fit()")
        sparse = sp.hstack(blocks, format="csr")
        dense = np.asarray(embeddings, dtype=np.float64) if self.embedded else None
        coef, intercept, _ = fit_ridge(sparse, dense, y, self.ridge.alpha)
        self.ridge.coef_, self.ridge.intercept_ = coef, intercept
        self.ridge.n_features_in_ = coef.shape[1]
        return self

    def block_features(self, texts: Sequence[str]) -> list[sp.csr_matrix]:
        """Each block's L2-normalised TF-IDF rows (what ``TfidfVectorizer.transform`` gives)."""
        out = []
        for counts, tfidf in self.blocks:
            c = counts.transform(texts)
            rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
            weights = (np.log(c.data, dtype=np.float64) + 1.0) * tfidf.idf_[c.indices]  # sublinear tf x idf
            norms = np.sqrt(np.bincount(rows, weights=weights * weights, minlength=c.shape[0]))
            norms[norms == 0.0] = 1.0
            out.append(sp.csr_matrix((weights / norms[rows], c.indices, c.indptr), shape=c.shape))
        return out

    def predict(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Raw (unclipped) predictions, shape (n, 6): block by block, no concatenation needed."""
        coef, start = self.ridge.coef_, 0
        total = np.broadcast_to(self.ridge.intercept_, (len(texts), coef.shape[0])).copy()
        for block in self.block_features(texts):
            stop = start + block.shape[1]
            total += block @ coef[:, start:stop].T
            start = stop
        if getattr(self, "embedded", False):
            if embeddings is None:
                raise ValueError("this source model uses embeddings; pass them to predict()")
            total += embeddings @ coef[:, start:].T
        return total
