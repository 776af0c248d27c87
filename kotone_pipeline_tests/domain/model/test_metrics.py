from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalRow, Pair, Vector
from kotone_pipeline.domain.model.metrics import (
    evaluate,
    score,
    score_prediction_records,
    summarize_arrays,
)
from kotone_pipeline.domain.model.predictor import PredictInput, Prediction, Predictor


def pair(i: int, values: Sequence[int], source_type: str = "request_text") -> Pair:
    return Pair(group_id=f"g{i}", source_type=source_type, text=f"text {i}", vector=Vector.from_values(list(values)))


def pred(values: Sequence[int] | None, latency: float = 0.0, raw: str | None = "raw") -> Prediction:
    return Prediction(vector=None if values is None else Vector.from_values(list(values)), raw=raw, latency_ms=latency)


# Three rows worked out by hand (dims: energy, warmth, brightness, acousticness, complexity, nostalgia).
#   r1 target 5 5 5 5 5 5   pred 6 5 5 5 5 3   |err| 1 0 0 0 0 2
#   r2 target 0 10 2 4 5 8 pred = target      |err| 0 0 0 0 0 0
#   r3 target 10 5 8 4 5 2  pred 9 5 9 4 5 2   |err| 1 0 1 0 0 0
TARGETS = [(5, 5, 5, 5, 5, 5), (0, 10, 2, 4, 5, 8), (10, 5, 8, 4, 5, 2)]
PREDS = [(6, 5, 5, 5, 5, 3), (0, 10, 2, 4, 5, 8), (9, 5, 9, 4, 5, 2)]


@pytest.fixture
def worked_example():
    pairs = [pair(0, TARGETS[0]), pair(1, TARGETS[1]), pair(2, TARGETS[2], "rule_prompt")]
    preds = [pred(PREDS[0], 10.0), pred(PREDS[1], 20.0), pred(PREDS[2], 40.0)]
    return score(pairs, preds, model_id="m", dataset="probe")


def test_worked_example_pooled_metrics(worked_example):
    summary, _ = worked_example
    assert summary.rows == 3
    assert summary.vector_mae == pytest.approx(5 / 18)  # 1+2 + 0 + 1+1 over 18 cells
    assert summary.mae_raw == pytest.approx(50 / 18)
    assert summary.mse_norm == pytest.approx((1 + 4 + 1 + 1) / 100 / 18)
    assert summary.per_dim_mae == pytest.approx(
        {
            "energy": 2 / 3,
            "warmth": 0,
            "brightness": 1 / 3,
            "acousticness": 0,
            "complexity": 0,
            "nostalgia": 2 / 3,
        }
    )
    assert summary.exact_match_rate == pytest.approx(1 / 3)  # only r2
    assert summary.within_one_rate == pytest.approx(2 / 3)  # r1 is off by 2 on nostalgia
    assert summary.json_valid_rate == 1.0
    assert summary.by_source_type == pytest.approx({"request_text": 3 / 12, "rule_prompt": 2 / 6})


def test_worked_example_r2(worked_example):
    summary, _ = worked_example
    expected = {
        "energy": 1 - 2 / 50,  # targets 5,0,10: mean 5, SS_tot 50, SS_res 2
        "warmth": 1.0,  # exact predictions
        "brightness": 1 - 1 / 18,  # targets 5,2,8: SS_tot 18, SS_res 1
        "acousticness": 1.0,
        "complexity": 0.0,  # targets all 5: zero variance, defined as 0 even though exact
        "nostalgia": 1 - 4 / 18,  # targets 5,8,2: SS_tot 18, SS_res 4
    }
    assert summary.per_dim_r2 == pytest.approx(expected)
    assert summary.mean_r2 == pytest.approx(sum(expected.values()) / 6)


def test_worked_example_latency_percentiles(worked_example):
    summary, _ = worked_example
    assert summary.p50_latency_ms == pytest.approx(20.0)
    assert summary.p95_latency_ms == pytest.approx(20.0 + 0.9 * 20.0)  # rank 1.9 between 20 and 40


def test_eval_rows_keep_abs_error_and_row_mae(worked_example):
    _, rows = worked_example
    assert [r.abs_error["nostalgia"] for r in rows] == [2, 0, 0]
    assert rows[0].abs_error == {
        "energy": 1,
        "warmth": 0,
        "brightness": 0,
        "acousticness": 0,
        "complexity": 0,
        "nostalgia": 2,
    }
    assert [r.row_mae for r in rows] == pytest.approx([3 / 6, 0, 2 / 6])
    assert [r.latency_ms for r in rows] == [10.0, 20.0, 40.0]
    assert rows[2].source_type == "rule_prompt" and rows[2].valid


def test_eval_rows_equal_fully_validated_rows(worked_example):
    _, rows = worked_example
    for row in rows:
        assert EvalRow.model_validate(row.model_dump()) == row
        assert EvalRow.model_validate_json(row.model_dump_json()) == row


def test_invalid_prediction_is_scored_as_neutral_not_skipped():
    pairs = [pair(0, (0, 10, 5, 5, 5, 5)), pair(1, (5, 5, 5, 5, 5, 5))]
    summary, rows = score(pairs, [pred(None), pred((5, 5, 5, 5, 5, 5))], "m", "holdout")
    # Row 0 scored as 5s: |0-5| + |10-5| = 10 over 6 dims; row 1 exact.
    assert summary.vector_mae == pytest.approx(10 / 12)
    assert summary.json_valid_rate == 0.5
    assert rows[0].valid is False
    assert rows[0].prediction == Vector.neutral()
    assert rows[0].row_mae == pytest.approx(10 / 6)


def test_all_invalid_run_never_reports_zero_mae():
    pairs = [pair(0, (0, 0, 0, 0, 0, 0)), pair(1, (10, 10, 10, 10, 10, 10))]
    summary, _ = score(pairs, [pred(None), pred(None)], "broken", "holdout")
    assert summary.vector_mae == pytest.approx(5.0)
    assert summary.json_valid_rate == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 10)] * 6), min_size=1, max_size=30))
def test_all_invalid_mae_is_distance_to_neutral(targets):
    pairs = [pair(i, t) for i, t in enumerate(targets)]
    summary, _ = score(pairs, [pred(None)] * len(pairs), "m", "d")
    expected = sum(abs(v - 5) for t in targets for v in t) / (6 * len(targets))
    assert summary.vector_mae == pytest.approx(expected)
    assert summary.json_valid_rate == 0.0
    if any(v != 5 for t in targets for v in t):
        assert summary.vector_mae > 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.tuples(*[st.integers(0, 10)] * 6), st.tuples(*[st.integers(0, 10)] * 6)),
        min_size=1,
        max_size=25,
    )
)
def test_pooled_metrics_agree_with_plain_python(rows):
    pairs = [pair(i, t) for i, (t, _) in enumerate(rows)]
    summary, eval_rows = score(pairs, [pred(p) for _, p in rows], "m", "d")
    errors = [[abs(a - b) for a, b in zip(t, p, strict=True)] for t, p in rows]
    assert summary.vector_mae == pytest.approx(sum(map(sum, errors)) / (6 * len(rows)))
    assert summary.exact_match_rate == pytest.approx(sum(max(e) == 0 for e in errors) / len(rows))
    assert summary.within_one_rate == pytest.approx(sum(max(e) <= 1 for e in errors) / len(rows))
    assert all(r <= 1.0 for r in summary.per_dim_r2.values())
    assert [r.row_mae for r in eval_rows] == pytest.approx([sum(e) / 6 for e in errors])


def test_lengths_must_match_and_empty_sets_are_refused():
    with pytest.raises(ValueError, match="1 pairs but 0 predictions"):
        score([pair(0, (1, 1, 1, 1, 1, 1))], [], "m", "d")
    with pytest.raises(ValueError, match="no rows"):
        score([], [], "m", "d")


class EchoPredictor(Predictor):
    """Predicts the target back for even rows, nothing valid for odd rows; records batch sizes."""

    model_id = "echo"

    def __init__(self, answers: dict[str, Vector | None], drop_last: bool = False):
        self.answers = answers
        self.batches: list[int] = []
        self.drop_last = drop_last

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        self.batches.append(len(inputs))
        out = [Prediction(vector=self.answers[x.text], latency_ms=1.0) for x in inputs]
        return out[:-1] if self.drop_last else out


def test_evaluate_batches_and_scores():
    pairs = [pair(i, (i % 11,) * 6) for i in range(5)]
    answers = {p.text: (p.vector if i % 2 == 0 else None) for i, p in enumerate(pairs)}
    model = EchoPredictor(answers)
    summary, rows = evaluate(model, pairs, "probe", batch_size=2)
    assert model.batches == [2, 2, 1]
    assert summary.model_id == "echo" and summary.dataset == "probe"
    assert summary.json_valid_rate == pytest.approx(3 / 5)
    # Invalid rows 1 and 3 have targets 1s and 3s -> errors 4 and 2 on each dim.
    assert summary.vector_mae == pytest.approx((4 + 2) / 5)
    assert [r.valid for r in rows] == [True, False, True, False, True]


def test_evaluate_rejects_a_predictor_that_drops_rows():
    pairs = [pair(i, (1,) * 6) for i in range(3)]
    model = EchoPredictor({p.text: p.vector for p in pairs}, drop_last=True)
    with pytest.raises(ValueError, match="returned 2 predictions for 3 inputs"):
        evaluate(model, pairs, "probe")


def test_prediction_records_missing_null_and_bad_vectors_are_invalid():
    pairs = [pair(i, (2, 2, 2, 2, 2, 2)) for i in range(4)]
    good = dict.fromkeys(DIMS, 2)
    records = [
        {"pair_id": pairs[0].id, "raw": '{"energy":2}', "prediction": good, "latency_ms": 30},
        {"pair_id": pairs[1].id, "raw": "garbage", "prediction": None, "latency_ms": 10},
        {"pair_id": pairs[2].id, "raw": "x", "prediction": {**good, "energy": 11}, "latency_ms": 20},
        {"pair_id": "p_not_in_this_set", "raw": "x", "prediction": good, "latency_ms": 999},
        # pairs[3] has no record at all
    ]
    summary, rows = score_prediction_records(pairs, records, "run-1", "holdout")
    assert [r.valid for r in rows] == [True, False, False, False]
    assert summary.json_valid_rate == 0.25
    assert summary.vector_mae == pytest.approx(3 * 3 / 4)  # three rows scored as 5s against 2s
    assert rows[1].raw_output == "garbage"
    # Latency percentiles use the three records that exist for this set (10, 20, 30), not the missing one.
    assert summary.p50_latency_ms == pytest.approx(20.0)


def test_prediction_records_duplicates_and_missing_ids_are_errors():
    pairs = [pair(0, (2,) * 6)]
    rec = {"pair_id": pairs[0].id, "raw": "", "prediction": None, "latency_ms": 1}
    with pytest.raises(ValueError, match="duplicate prediction record"):
        score_prediction_records(pairs, [rec, rec], "m", "holdout")
    with pytest.raises(ValueError, match="record 1 has no string 'pair_id'"):
        score_prediction_records(pairs, [{"raw": ""}], "m", "holdout")


def test_scoring_100k_rows_is_fast():
    rng = random.Random(0)
    n = 100_000
    vectors = [Vector.from_values([rng.randint(0, 10) for _ in DIMS]) for _ in range(121)]
    # 1,000 distinct pairs repeated keep the set-up cheap; scoring does not need distinct objects.
    distinct = [pair(i, vectors[i % 121].values()) for i in range(1000)]
    pairs = [distinct[i % 1000] for i in range(n)]
    preds = [Prediction(vector=vectors[(i * 7) % 121] if i % 10 else None, latency_ms=1.0) for i in range(n)]
    targets = np.array([p.vector.values() for p in pairs])
    start = time.perf_counter()
    summarize_arrays(targets, targets, np.ones(n, dtype=bool), ["request_text"] * n, np.ones(n), "m", "d")
    array_s = time.perf_counter() - start
    start = time.perf_counter()
    summary, rows = score(pairs, preds, "m", "d")
    full_s = time.perf_counter() - start
    assert summary.rows == len(rows) == n
    assert summary.json_valid_rate == pytest.approx(0.9)
    # Measured ~0.06 s (arrays) and ~0.7 s (with 100k EvalRows) on 2 busy cores; bounds are loose.
    assert array_s < 0.5
    assert full_s < 4.0
