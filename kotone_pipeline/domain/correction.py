"""The champion's second part: a correction learned only from people's labels (issue 23).

The first part (``LocalTextModel``'s per-source Ridge) learns from thousands of teacher rows, which
say what the lexicon says; a few dozen rows labelled by people, added as ordinary rows, barely move
it. Here those rows get their own small model, fitted to the first part's residuals on features that
carry meaning beyond the lexicon: TF-IDF word and character n-grams fitted on the people's texts,
the sentence embeddings and the lexicon reading the first part already computed (reused, not
recomputed), and the first part's own raw prediction (so the correction can also re-scale it).

Its strength is chosen by cross-validation grouped by ``group_id`` (one writer's requests never sit
on both sides of a fold) over a grid of ridge ``alpha`` and a blend weight ``w`` in [0, 1]; the
output is ``base + w * correction``. ``w = 0`` is in the grid, so the correction switches itself off
when it does not beat the first part in CV, and it is never fitted below ``min_people_rows`` rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold

from kotone_pipeline.domain.local_model import SourceModel, to_dim_values, training_data_hash
from kotone_pipeline.domain.schemas import LocalHyperParams, Pair

# Origins whose labels a person gave: hand-written sets, imported labelled data, the flywheel's reviews.
PEOPLE_ORIGINS = frozenset({"human", "imported", "reviewed"})
DEFAULT_MIN_PEOPLE_ROWS = 20
# Chosen by the people_gain benchmark (grouped halves of both people-written sets); see its docstring.
DEFAULT_ALPHAS: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)
DEFAULT_BLENDS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_FOLDS = 5
# Measured (people_gain): residuals of a first part that saw the people rows are optimistic (it fits
# them), and the correction then learns too little; see the benchmark docstring for the figures.
BASE_WITHOUT_PEOPLE = True
# The first part's raw prediction enters the features on the 0..1 scale, like the other blocks.
BASE_SCALE = 0.1


def is_people_row(pair: Pair) -> bool:
    return pair.origin in PEOPLE_ORIGINS


def split_people_rows(pairs: Sequence[Pair], min_people_rows: int) -> tuple[list[Pair], list[Pair]]:
    """``(people rows for the correction, rows for the first part)``.

    A source type's people rows train the correction when there are at least ``min_people_rows`` of
    them and the source type has other rows for the first part; the first part then trains without
    them (``BASE_WITHOUT_PEOPLE``), so their residuals are honest. Otherwise they stay ordinary rows
    of the first part, and the model is exactly today's."""
    people: dict[str, list[Pair]] = {}
    others: Counter[str] = Counter()
    for pair in pairs:
        if is_people_row(pair):
            people.setdefault(pair.source_type, []).append(pair)
        else:
            others[pair.source_type] += 1
    chosen = [p for s, rows in people.items() if len(rows) >= min_people_rows and others[s] for p in rows]
    if not chosen or not BASE_WITHOUT_PEOPLE:
        return chosen, list(pairs)
    ids = {id(p) for p in chosen}
    return chosen, [p for p in pairs if id(p) not in ids]


def people_summary(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Rows by origin and the order-independent hash of a set of rows (what model.json records)."""
    return {
        "rows": len(pairs),
        "rows_by_origin": dict(sorted(Counter(p.origin for p in pairs).items())),
        "data_hash": training_data_hash(pairs),
    }


def _hparams(alpha: float) -> LocalHyperParams:
    # Word 1-2 grams + char_wb 2-5 grams (Japanese has no spaces: characters carry it), min_df 1.
    return LocalHyperParams(alpha=alpha, word_ngram_max=2, char_ngram_max=5, min_df=1, use_char=True)


def _dense(dense: np.ndarray, base_raw: np.ndarray) -> np.ndarray:
    return np.hstack([dense, base_raw * BASE_SCALE])


def _mae(base_raw: np.ndarray, correction: np.ndarray, y: np.ndarray, blend: float) -> float:
    """The project's metric: mean absolute error of the rounded, clipped 0..10 predictions."""
    return float(np.abs(to_dim_values(base_raw + blend * correction) - y).mean())


@dataclass
class PeopleCorrection:
    """``fit`` on people's rows of one source type, then ``apply``; ``meta`` says what CV found."""

    min_people_rows: int = DEFAULT_MIN_PEOPLE_ROWS
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    blends: tuple[float, ...] = DEFAULT_BLENDS
    folds: int = DEFAULT_FOLDS
    model: SourceModel | None = None
    blend: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.model is not None and self.blend > 0.0

    def fit(
        self, pairs: Sequence[Pair], base_raw: np.ndarray, dense: np.ndarray | None
    ) -> PeopleCorrection:
        """``base_raw``: the first part's unrounded predictions for ``pairs``; ``dense``: its dense block
        for them (embeddings, lexicon reading), or None when it has none."""
        self.model, self.blend = None, 0.0
        y = np.array([p.vector.values() for p in pairs], dtype=np.int64)
        groups = np.array([p.group_id for p in pairs])
        n_groups = len(set(groups.tolist()))
        base_mae = float(np.abs(to_dim_values(base_raw) - y).mean()) if len(pairs) else None
        self.meta = {
            "min_people_rows": self.min_people_rows,
            **people_summary(pairs),
            "groups": n_groups,
            "base_mae_on_people_rows": base_mae,
        }
        if len(pairs) < self.min_people_rows or n_groups < 2:
            self.meta["reason"] = (
                f"{len(pairs)} people row(s) in {n_groups} group(s): at least {self.min_people_rows} rows in "
                "2 groups are needed, so the correction is zero"
            )
            return self
        dense = np.zeros((len(pairs), 0)) if dense is None else np.asarray(dense, dtype=np.float64)
        features = _dense(dense, base_raw)
        texts = [p.text for p in pairs]
        residual = y - base_raw
        k = min(self.folds, n_groups)
        # Out-of-fold corrections per alpha; every blend is scored on them at no extra fit.
        oof = {alpha: np.zeros_like(base_raw) for alpha in self.alphas}
        for train, test in GroupKFold(n_splits=k).split(texts, groups=groups):
            train_texts, test_texts = [texts[i] for i in train], [texts[i] for i in test]
            for alpha in self.alphas:
                fold = SourceModel(_hparams(alpha), embedded=True)
                fold.fit(train_texts, residual[train], features[train])
                oof[alpha][test] = fold.predict(test_texts, features[test])
        grid = [
            {"alpha": alpha, "blend": blend, "cv_mae": _mae(base_raw, oof[alpha], y, blend)}
            for alpha in self.alphas
            for blend in self.blends
        ]
        # Lowest CV MAE; ties go to the weaker correction (smaller blend, then larger alpha).
        best = min(grid, key=lambda g: (round(g["cv_mae"], 9), g["blend"], -g["alpha"]))
        self.meta.update(
            folds=k,
            cv_base_mae=base_mae,
            cv_best=best,
            cv_gain=None if not base_mae else round(1.0 - best["cv_mae"] / base_mae, 6),
            cv_grid=grid,
        )
        if best["blend"] <= 0.0:
            self.meta["reason"] = "grouped CV found no blend that beats the first part: the correction is zero"
            return self
        self.model = SourceModel(_hparams(best["alpha"]), embedded=True).fit(texts, residual, features)
        self.blend = float(best["blend"])
        self.meta.update(alpha=best["alpha"], blend=self.blend, reason="fitted")
        return self

    def apply(self, texts: Sequence[str], base_raw: np.ndarray, dense: np.ndarray | None) -> np.ndarray:
        """``base_raw`` corrected (unrounded); unchanged when the correction is not active."""
        if not self.active:
            return base_raw
        dense = np.zeros((len(texts), 0)) if dense is None else dense
        return base_raw + self.blend * self.model.predict(texts, _dense(dense, base_raw))  # type: ignore[union-attr]
