"""The two baselines every cycle evaluates (docs/design.md § Evaluation): a constant and a rule reader."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence

from kotone_pipeline.domain.data.dims import DIMS, round_half_up, to_scale10
from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.model.predictor import PredictInput, Prediction, Predictor, format_completion
from kotone_pipeline.domain.requests.catalog import Catalog, load_catalog, mean_vector_100
from kotone_pipeline.domain.requests.lexicon import Lexicon, default_lexicon
from kotone_pipeline.domain.requests.lexicon_reader import LexiconReader
from kotone_pipeline.domain.requests.writer import parse_rule_prompt


def median_vector(pairs: Iterable[Pair]) -> Vector:
    """Per-dim median of the pairs' vectors, half-up (an even count's x.5 median rounds up)."""
    columns: list[list[int]] = [[] for _ in DIMS]
    for pair in pairs:
        for column, value in zip(columns, pair.vector.values(), strict=True):
            column.append(value)
    if not columns[0]:
        raise ValueError("a median vector needs at least one training pair")
    return Vector.from_values([round_half_up(statistics.median(column)) for column in columns])


def _timed(inputs: Sequence[PredictInput], predict_one: Callable[[PredictInput], Vector]) -> list[Prediction]:
    out = []
    for item in inputs:
        started = time.perf_counter()
        vector = predict_one(item)
        raw = format_completion(vector)
        out.append(Prediction(vector=vector, raw=raw, latency_ms=(time.perf_counter() - started) * 1000))
    return out


class ConstantBaseline(Predictor):
    """Predicts the train median on every dim, whatever the input."""

    model_id = "baseline-constant"

    def __init__(self, train: Iterable[Pair]) -> None:
        self.vector = median_vector(train)

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        return _timed(inputs, lambda _item: self.vector)


class RuleBaseline(Predictor):
    """Reads the input with the teacher's own knowledge.

    rule_prompt: the catalog mean of the named parts (an unparseable prompt or unknown part gets the
    fallback); request_text: the lexicon concepts it names, through the label rule (the fallback when
    it names none). On text people write it knows only the words the lexicon lists.
    """

    model_id = "baseline-rule"

    def __init__(
        self, catalog: Catalog | None = None, fallback: Vector | None = None, lexicon: Lexicon | None = None
    ) -> None:
        """``fallback``: normally the train median (see ``from_train``); the neutral vector if omitted."""
        self.catalog = catalog if catalog is not None else load_catalog()
        self.fallback = fallback if fallback is not None else Vector.neutral()
        self.reader = LexiconReader(lexicon if lexicon is not None else default_lexicon())

    @classmethod
    def from_train(cls, train: Iterable[Pair], catalog: Catalog | None = None) -> RuleBaseline:
        """Fallback = the train median (what the constant baseline predicts)."""
        return cls(catalog, fallback=median_vector(train))

    def predict_vector(self, text: str, source_type: str) -> Vector:
        if source_type == "rule_prompt":
            return self._from_parts(text)
        values = self.reader.read(text)
        return self.fallback if values is None else Vector.from_values(values)

    def _from_parts(self, text: str) -> Vector:
        named = parse_rule_prompt(text)
        if named is None:
            return self.fallback
        parts = [self.catalog.get(part_id) for part_id in named.values()]
        known = [part for part in parts if part is not None]
        if len(known) != len(parts):
            return self.fallback
        return Vector.from_values([to_scale10(v) for v in mean_vector_100(known)])

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        return _timed(inputs, lambda item: self.predict_vector(item.text, item.source_type))
