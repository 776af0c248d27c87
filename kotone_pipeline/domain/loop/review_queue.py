"""Which logged request a person should label next: the review queue's ranking (pure: no files, no clock).

A label teaches the loop most where the champion is unsure and where the text is unlike what it trained on:

- **uncertainty**: how far the champion's logged prediction is from the lexicon reader's reading of the same
  text (``RuleBaseline``: the catalog parts of a rule prompt, the lexicon concepts a request names), as the
  mean absolute difference over the six dims. Two independent readings that disagree by 3 or more per dim
  are as uncertain as it gets (1.0). When the reader knows none of the words, nothing can be compared:
  0.5, and the reason says so.
- **novelty**: 1 - the highest TF-IDF cosine similarity to any training (teacher) text. Character 3-grams
  within words, so Japanese (no spaces) and misspellings compare too; only the rarer n-grams (in at most
  2% of the training texts, once there are 500 or more) count, so the template words every request shares
  ("a piece for ...") do not make everything look familiar, and the sparse product stays small.

``score = 0.6 * uncertainty + 0.4 * novelty``. The queue is then picked greedily, MMR-style, from the
best-scored pool: each next item maximises ``0.7 * score - 0.3 * (its highest similarity to an item already
picked)``, and an item more than ``PARAPHRASE_SIMILARITY`` alike to one already picked goes to the end, so
twenty paraphrases of one request never come in a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

from kotone_pipeline.domain.data.dims import DIMS

UNCERTAINTY_WEIGHT = 0.6
NOVELTY_WEIGHT = 0.4
FULL_DISAGREEMENT = 3.0  # mean |champion - reader| per dim that counts as fully uncertain
UNREAD_UNCERTAINTY = 0.5  # the reader knows none of the words: no comparison possible
MMR_LAMBDA = 0.7
PARAPHRASE_SIMILARITY = 0.8
POOL_FACTOR = 5  # MMR picks among the best limit * POOL_FACTOR (at least MIN_POOL) by score
MIN_POOL = 100
RARE_TERM_SHARE = 0.02
MIN_TEXTS_FOR_RARE_TERMS = 500

Reading = Callable[[str, str], dict[str, int] | None]


@dataclass(frozen=True)
class Candidate:
    id: str
    text: str
    source_type: str
    prediction: dict[str, int]


@dataclass(frozen=True)
class Scored:
    id: str
    text: str
    source_type: str
    prediction: dict[str, int]
    reading: dict[str, int] | None
    disagreement: float | None  # mean |champion - reader| per dim; None when the reader read nothing
    novelty: float  # 1 - the highest similarity to a training text
    score: float
    reason: str


def _analyzer_options() -> dict[str, object]:
    return {"analyzer": "char_wb", "ngram_range": (3, 3), "lowercase": True}


class NoveltyIndex:
    """The training texts as TF-IDF vectors of their rarer character 3-grams; ``similarity(texts)`` is each
    text's highest cosine similarity to one of them."""

    def __init__(self, train_texts: Sequence[str]) -> None:
        texts = list(dict.fromkeys(t for t in train_texts if t.strip()))  # a repeated text is no more familiar
        self.size = len(texts)
        self._vectorizer: TfidfVectorizer | None = None
        self._matrix: sparse.csr_matrix | None = None
        if not texts:
            return
        # Only a large set has template n-grams worth dropping; a small one keeps every n-gram.
        max_df: int | float = int(RARE_TERM_SHARE * len(texts)) if len(texts) >= MIN_TEXTS_FOR_RARE_TERMS else 1.0
        vectorizer = TfidfVectorizer(**_analyzer_options(), max_df=max_df, sublinear_tf=True, dtype=np.float32)
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError:  # no n-gram rare enough: nothing to compare with
            return
        self._vectorizer = vectorizer
        self._matrix = matrix.T.tocsr()  # (terms, train texts): one product per batch of queries

    def similarity(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectorizer is None or self._matrix is None or not texts:
            return np.zeros(len(texts), dtype=np.float32)
        queries = self._vectorizer.transform(texts)
        products = (queries @ self._matrix).tocsr()
        best = np.zeros(len(texts), dtype=np.float32)
        # Row-wise max of a CSR matrix without densifying it.
        nonempty = np.diff(products.indptr) > 0
        if nonempty.any():
            best[nonempty] = np.maximum.reduceat(products.data, products.indptr[:-1][nonempty])
        return np.clip(best, 0.0, 1.0)


def _paraphrase_vectors(texts: Sequence[str]) -> sparse.csr_matrix:
    """Unit vectors of character 3-grams (hashed: no fit), for how alike two candidates are."""
    return HashingVectorizer(**_analyzer_options(), n_features=2**18, alternate_sign=False, norm="l2").transform(texts)


def _reason(disagreement: float | None, prediction: dict[str, int], reading: dict[str, int] | None, sim: float) -> str:
    if reading is None or disagreement is None:
        unsure = "the lexicon reader knows none of its words, so nothing checks the champion's reading"
    else:
        gaps = sorted(DIMS, key=lambda d: -abs(prediction[d] - reading[d]))
        shown = ", ".join(f"{d} {prediction[d]} vs {reading[d]}" for d in gaps[:2] if prediction[d] != reading[d])
        if disagreement == 0:
            unsure = "the champion and the lexicon reader agree on every dim"
        else:
            unsure = (
                f"the champion and the lexicon reader disagree by {disagreement:.1f} per dim on average "
                f"({shown}: champion vs reader)"
            )
    pct = round(100 * sim)
    familiar = (
        f"unlike the training data (its closest training text is {pct}% alike)"
        if sim < 0.5
        else f"close to the training data ({pct}% alike to a training text)"
    )
    return f"{unsure[0].upper()}{unsure[1:]}; {familiar}."


def score_candidates(candidates: Sequence[Candidate], read: Reading, index: NoveltyIndex) -> list[Scored]:
    """Each candidate's uncertainty, novelty, score and reason (in the input order)."""
    if not candidates:
        return []
    similarity = index.similarity([c.text for c in candidates])
    out = []
    for candidate, sim in zip(candidates, similarity.tolist(), strict=True):
        reading = read(candidate.text, candidate.source_type)
        if reading is None:
            disagreement, uncertainty = None, UNREAD_UNCERTAINTY
        else:
            disagreement = sum(abs(candidate.prediction[d] - reading[d]) for d in DIMS) / len(DIMS)
            uncertainty = min(disagreement / FULL_DISAGREEMENT, 1.0)
        novelty = 1.0 - float(sim)
        out.append(
            Scored(
                id=candidate.id,
                text=candidate.text,
                source_type=candidate.source_type,
                prediction=candidate.prediction,
                reading=reading,
                disagreement=disagreement,
                novelty=novelty,
                score=UNCERTAINTY_WEIGHT * uncertainty + NOVELTY_WEIGHT * novelty,
                reason=_reason(disagreement, candidate.prediction, reading, float(sim)),
            )
        )
    return out


def rank(scored: Sequence[Scored], limit: int) -> list[Scored]:
    """The next ``limit`` items to review: high scores first, kept diverse (see the module docstring)."""
    if limit <= 0 or not scored:
        return []
    pool_size = max(limit * POOL_FACTOR, MIN_POOL)
    pool = sorted(scored, key=lambda s: (-s.score, s.id))[:pool_size]
    vectors = _paraphrase_vectors([s.text for s in pool])
    alike = (vectors @ vectors.T).toarray()
    scores = np.array([s.score for s in pool])
    closest = np.zeros(len(pool))  # each one's highest similarity to an item already picked
    open_ = np.ones(len(pool), dtype=bool)
    picked: list[int] = []
    deferred: list[int] = []  # near paraphrases of a picked item: only after everything else
    while len(picked) < limit and open_.any():
        value = np.where(open_, MMR_LAMBDA * scores - (1 - MMR_LAMBDA) * closest, -np.inf)
        best = int(np.argmax(value))
        open_[best] = False
        if picked and closest[best] > PARAPHRASE_SIMILARITY:
            deferred.append(best)
            continue
        picked.append(best)
        closest = np.maximum(closest, alike[best])
    picked.extend(deferred[: limit - len(picked)])
    return [pool[i] for i in picked]


def lexicon_reading(baseline: object) -> Reading:
    """The reader a ``RuleBaseline`` uses: catalog parts for a rule prompt, lexicon concepts for a request;
    None when a request names no concept the lexicon knows (instead of the baseline's fallback vector)."""
    from kotone_pipeline.domain.model.baselines import RuleBaseline

    assert isinstance(baseline, RuleBaseline)

    def read(text: str, source_type: str) -> dict[str, int] | None:
        if source_type == "rule_prompt":
            return baseline.predict_vector(text, source_type).as_dict()
        values = baseline.reader.read(text)
        return None if values is None else dict(zip(DIMS, values, strict=True))

    return read


__all__ = ["Candidate", "NoveltyIndex", "Scored", "lexicon_reading", "rank", "score_candidates"]
