from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS, to_scale10
from kotone_pipeline.domain.data.schemas import EvalRow, FailureExample, Pair, Vector, normalize_text
from kotone_pipeline.domain.loop.augment import augment, augment_seed, plan_counts
from kotone_pipeline.domain.loop.quality import request_text_problem
from kotone_pipeline.domain.requests.label_rule import Mention, label_100
from kotone_pipeline.domain.requests.lexicon import default_lexicon

vec = st.tuples(*[st.integers(0, 10)] * 6)
LEXICON = default_lexicon()


def eval_row(i: int, target: tuple[int, ...], row_mae: float) -> EvalRow:
    return EvalRow(
        pair_id=f"probe{i}",
        group_id=f"pg{i}",
        source_type="request_text",
        text=f"probe text {i}",
        target=Vector.from_values(list(target)),
        prediction=Vector.neutral(),
        valid=True,
        abs_error=dict.fromkeys(DIMS, 1),
        row_mae=row_mae,
    )


def base_pair(i: int, values: tuple[int, ...]) -> Pair:
    return Pair(
        group_id=f"b{i}",
        source_type="rule_prompt",
        text=f"base prompt {i}",
        vector=Vector.from_values(list(values)),
    )


BASE = [base_pair(i, ((i * 3) % 11, 2, 9, 5, 4, 6)) for i in range(40)]


def run(failing, focus=("energy", "nostalgia"), n=40, cycle="c1", eval_id="e1", existing=None, **kw):
    return augment(
        failing,
        BASE,
        list(focus),
        n_train_base=n,
        cycle_id=cycle,
        eval_run_id=eval_id,
        existing_texts=set(existing or ()),
        **kw,
    )


# --- plan_counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "add", "replay", "expected"),
    [
        (0, 0.2, 0.15, (12, 2)),  # floor of 12; 12 x 0.15 = 1.8 -> 2
        (100, 0.2, 0.15, (20, 3)),  # 20 x 0.15 = 3.0
        (100, 0.2, 0.125, (20, 3)),  # 2.5 rounds half UP to 3 (Python's round would give 2)
        (62, 0.2, 0.15, (12, 2)),  # 12.4 -> 12
        (63, 0.2, 0.15, (13, 2)),  # 12.6 -> 13; 13 x 0.15 = 1.95 -> 2
        (1000, 0.9, 0.15, (500, 75)),  # add_ratio clamped to 0.5
        (1000, 0.01, 0.15, (50, 8)),  # add_ratio clamped to 0.05; 7.5 -> 8
        (1000, 0.2, 0.9, (200, 100)),  # replay_ratio clamped to 0.5
        (1000, 0.2, -1.0, (200, 0)),  # replay_ratio clamped to 0
    ],
)
def test_plan_counts(n, add, replay, expected):
    assert plan_counts(n, add, replay) == expected


def test_plan_counts_rejects_negative_sizes():
    with pytest.raises(ValueError, match="n_train_base"):
        plan_counts(-1)


# --- augment ---------------------------------------------------------------------------------------


def test_counts_sources_and_row_shape():
    failing = [eval_row(0, (8, 5, 5, 5, 5, 2), 1.0), eval_row(1, (3, 5, 5, 5, 5, 7), 2.5)]
    result = run(failing, n=100)  # desired 20, replay 3
    assert result.counts["augmented"] == 20 and result.counts["replay"] == 3 and result.counts["total"] == 23
    assert result.counts["source"] == "failing_row"
    aug = [p for p in result.pairs if p.origin == "augmented"]
    replay = [p for p in result.pairs if p.origin == "replay"]
    assert len(aug) == 20 and len(replay) == 3
    # Worst first, cycling: probe1 (row MAE 2.5), probe0, probe1, ...
    assert [p.parent_id for p in aug[:4]] == ["probe1", "probe0", "probe1", "probe0"]
    for p in result.pairs:
        assert p.source_type == "request_text" and p.cycle == "c1"
        assert p.group_id.startswith("aug-c1-")
        assert p.meta["source_pair_id"] == p.parent_id
    assert len({p.group_id for p in result.pairs}) == len(result.pairs)
    by_id = {r.pair_id: r.target.as_dict() for r in failing}
    assert all(p.meta["target_vector"] == by_id[p.parent_id] for p in replay)  # replay aims at the same vector


def test_focus_dims_are_pushed_away_from_the_middle_and_others_jitter():
    failing = [eval_row(0, (7, 5, 5, 5, 5, 3), 1.0)]
    result = run(failing, n=100)
    augmented = [p for p in result.pairs if p.origin == "augmented"]
    for p in augmented:
        target = p.meta["target_vector"]
        assert 8 <= target["energy"] <= 10  # 7 is above the middle: pushed up 1..3
        assert 0 <= target["nostalgia"] <= 2  # 3 is below: pushed down 1..3
        assert all(4 <= target[d] <= 6 for d in ("warmth", "brightness", "acousticness", "complexity"))
        assert set(p.meta["pushed_dims"]) == {"energy", "nostalgia"}
    # The label is the lexicon rule's for what the text says, aimed at the target: on average the
    # request lands on the pushed side of the source.
    assert sum(p.vector.energy for p in augmented) / len(augmented) > 7
    assert sum(p.vector.nostalgia for p in augmented) / len(augmented) < 3
    assert result.counts["target_mae"] < 1.5


def test_falls_back_to_base_train_rows():
    result = run([], n=40)
    assert result.counts["source"] == "base_train"
    assert [p.parent_id for p in result.pairs[:3]] == [b.id for b in BASE[:3]]


def test_failure_examples_work_as_sources():
    failing = [
        FailureExample(
            pair_id="f1",
            source_type="rule_prompt",
            text="x" * 20,
            target=Vector.from_values([1, 1, 1, 1, 1, 1]),
            prediction=Vector.neutral(),
            row_mae=4.0,
        )
    ]
    result = run(failing, focus=("warmth",))
    assert {p.parent_id for p in result.pairs} == {"f1"}
    # 1 pushed down, clamped at 0.
    assert all(p.meta["target_vector"]["warmth"] == 0 for p in result.pairs if p.origin == "augmented")


def test_same_seed_same_rows_and_a_new_eval_run_changes_them():
    failing = [eval_row(0, (8, 5, 5, 5, 5, 2), 1.0)]
    first = run(failing)
    assert [p.model_dump() for p in run(failing).pairs] == [p.model_dump() for p in first.pairs]
    other = run(failing, eval_id="e2")
    assert [p.text for p in other.pairs] != [p.text for p in first.pairs]
    assert augment_seed("c1", "e1") == augment_seed("c1", "e1") != augment_seed("c1", "e2")


def test_texts_never_repeat_existing_ones():
    failing = [eval_row(0, (8, 5, 5, 5, 5, 2), 1.0)]
    first = run(failing)
    # The same seed would draw the same texts again; every one of them is taken, so all are redrawn.
    taken = {p.text.upper() + "  " for p in first.pairs}
    second = run(failing, existing=taken)
    assert not {normalize_text(p.text) for p in second.pairs} & {normalize_text(t) for t in taken}
    assert second.counts["text_redraws"] > 0


def test_unknown_focus_dims_are_rejected():
    with pytest.raises(ValueError, match="'tempo'"):
        run([], focus=("tempo",))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(vec, st.floats(0.1, 10)), min_size=0, max_size=8),
    st.lists(st.sampled_from(DIMS), max_size=3, unique=True),
    st.integers(0, 200),
    st.text(alphabet="abc123-", min_size=1, max_size=8),
)
def test_augmented_rows_are_valid_pushed_deterministic_and_new(sources, focus, n, cycle):
    failing = [eval_row(i, t, mae) for i, (t, mae) in enumerate(sources)]
    existing = {b.text for b in BASE} | {f"Could you make a lively tune for {i}?" for i in range(5)}
    result = run(failing, focus=focus, n=n, cycle=cycle, existing=existing)
    again = run(failing, focus=focus, n=n, cycle=cycle, existing=existing)
    assert [p.model_dump() for p in again.pairs] == [p.model_dump() for p in result.pairs]

    desired, replay = plan_counts(n)
    assert result.counts["augmented"] + result.counts["skipped_duplicate_text"] >= desired
    texts = [normalize_text(p.text) for p in result.pairs]
    assert len(set(texts)) == len(texts)
    assert not set(texts) & {normalize_text(t) for t in existing}

    source_vectors = {r.pair_id: r.target.values() for r in failing} | {b.id: b.vector.values() for b in BASE}
    for p in result.pairs:
        Pair.model_validate(p.model_dump())  # round-trips as a valid Pair
        assert all(isinstance(v, int) and 0 <= v <= 10 for v in p.vector.values())
        assert request_text_problem(p.text) is None
        mentions = [Mention(LEXICON.by_id[m["concept"]], m["role"], m["modifier"]) for m in p.meta["mentions"]]
        clean = label_100(mentions)
        noisy = p.meta["vector_100"]
        assert all(abs(c - v) <= 6.01 for c, v in zip(clean, noisy, strict=True))  # the rule's label + noise
        assert p.vector.values() == tuple(to_scale10(v) for v in noisy)
        values = tuple(p.meta["target_vector"][d] for d in DIMS)
        src = source_vectors[p.parent_id]
        if p.origin == "replay":
            assert values == src
            continue
        for i, d in enumerate(DIMS):
            if d in focus:
                if src[i] >= 5:
                    assert values[i] > src[i] or src[i] == 10
                else:
                    assert values[i] < src[i] or src[i] == 0
            else:
                assert abs(values[i] - src[i]) <= 1
