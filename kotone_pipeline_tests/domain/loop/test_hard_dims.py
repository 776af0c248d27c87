from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalRow, Vector
from kotone_pipeline.domain.loop.hard_dims import find_hard_dims, top_failures


def row(i: int, errors: tuple[int, ...]) -> EvalRow:
    """A probe row whose prediction is off by ``errors`` (target 0, prediction = error)."""
    return EvalRow(
        pair_id=f"p{i}",
        group_id=f"g{i}",
        source_type="request_text",
        text=f"text {i}",
        target=Vector.from_values([0] * 6),
        prediction=Vector.from_values(list(errors)),
        valid=True,
        abs_error=dict(zip(DIMS, errors, strict=True)),
        row_mae=sum(errors) / 6,
    )


ROWS = [
    row(0, (0, 3, 0, 4, 0, 1)),  # row MAE 8/6
    row(1, (0, 1, 0, 2, 0, 1)),  # 4/6
    row(2, (0, 0, 0, 0, 0, 0)),  # exact: not a failure
    row(3, (6, 0, 0, 0, 2, 0)),  # 8/6, ties with row 0 and comes after it
]


def test_focus_is_the_top_k_dims_by_probe_mae():
    report = find_hard_dims(ROWS, k=2, model_id="champion-1")
    # by dim: energy 6/4, warmth 4/4, brightness 0, acousticness 6/4, complexity 2/4, nostalgia 2/4
    assert report.by_dim == pytest.approx(
        {
            "energy": 1.5,
            "warmth": 1.0,
            "brightness": 0.0,
            "acousticness": 1.5,
            "complexity": 0.5,
            "nostalgia": 0.5,
        }
    )
    assert report.focus == ["energy", "acousticness"]  # tie at 1.5 broken by DIMS order
    assert report.k == 2 and report.source == "eval_rows" and report.eval_model_id == "champion-1"
    assert find_hard_dims(ROWS, k=3).focus == ["energy", "acousticness", "warmth"]
    assert find_hard_dims(ROWS, k=0).focus == []


def test_top_failures_are_worst_first_stable_and_skip_exact_rows():
    report = find_hard_dims(ROWS, top_n=20)
    assert [f.pair_id for f in report.top_failures] == ["p0", "p3", "p1"]
    assert report.top_failures[0].row_mae == pytest.approx(8 / 6)
    assert [f.pair_id for f in find_hard_dims(ROWS, top_n=1).top_failures] == ["p0"]


def test_top_failures_break_ties_by_input_order_not_by_id():
    # One ranking for the hard-dims document and the W&B table: equal row MAEs keep the eval rows' order
    # (the tracker's former copy sorted ties by pair id, so the two showed different rows).
    tied = [ROWS[1].model_copy(update={"pair_id": pid}) for pid in ("z-first", "a-second", "m-third")]
    assert [f.pair_id for f in top_failures(tied, top_n=2)] == ["z-first", "a-second"]
    assert [f.pair_id for f in top_failures(tied)] == ["z-first", "a-second", "m-third"]


def test_forced_dims_override_the_ranking():
    report = find_hard_dims(ROWS, k=2, forced=["nostalgia", "brightness", "nostalgia"])
    assert report.focus == ["nostalgia", "brightness"]
    assert report.source == "forced" and report.k == 2
    assert report.by_dim["energy"] == pytest.approx(1.5)  # the table is still recorded


def test_forced_dims_are_validated():
    with pytest.raises(ValueError, match="unknown dim.*'tempo'"):
        find_hard_dims(ROWS, forced=["energy", "tempo"])


def test_source_can_say_where_rows_came_from():
    assert find_hard_dims(ROWS, source="wandb_failures").source == "wandb_failures"
    with pytest.raises(ValueError, match="forced"):
        find_hard_dims(ROWS, source="forced")


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        find_hard_dims(ROWS, k=7)
    with pytest.raises(ValueError, match="no eval rows"):
        find_hard_dims([], k=2)
    assert find_hard_dims([], forced=["energy"]).focus == ["energy"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(*[st.integers(0, 10)] * 6), min_size=1, max_size=30),
    st.integers(0, 6),
)
def test_no_dim_outside_the_focus_is_harder_than_one_inside(errors, k):
    rows = [row(i, e) for i, e in enumerate(errors)]
    report = find_hard_dims(rows, k=k)
    assert len(report.focus) == k
    rest = [d for d in DIMS if d not in report.focus]
    if report.focus and rest:
        assert min(report.by_dim[d] for d in report.focus) >= max(report.by_dim[d] for d in rest)
    maes = [f.row_mae for f in report.top_failures]
    assert maes == sorted(maes, reverse=True)
