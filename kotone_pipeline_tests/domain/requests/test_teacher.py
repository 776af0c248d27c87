import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS, SLOTS, to_scale10
from kotone_pipeline.domain.data.schemas import Pair, pair_id
from kotone_pipeline.domain.loop.quality import filter_rows
from kotone_pipeline.domain.requests.catalog import load_catalog, mean_vector_100
from kotone_pipeline.domain.requests.label_rule import Mention, label_100
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.teacher import (
    NOISE_100,
    POOLS,
    combination_pool,
    combinations,
    concept_pool,
    generate_pairs,
    generate_rows,
)
from kotone_pipeline.domain.requests.writer import parse_rule_prompt

CATALOG = load_catalog()
N_COMBINATIONS = math.prod(len(CATALOG.by_slot[s]) for s in SLOTS)


def _groups(rows):
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["group_id"], []).append(row)
    return groups


def test_same_seed_same_rows_and_other_seeds_differ():
    first = list(generate_rows(CATALOG, 50, 11, "base"))
    assert first == list(generate_rows(CATALOG, 50, 11, "base"))
    other = list(generate_rows(CATALOG, 50, 12, "base"))
    assert [r["text"] for r in first] != [r["text"] for r in other]


def test_a_run_is_a_prefix_of_a_longer_run_with_the_same_seed():
    short = list(generate_rows(CATALOG, 30, 4, "base"))
    assert list(generate_rows(CATALOG, 90, 4, "base"))[: len(short)] == short


def test_each_group_is_a_rule_prompt_then_its_composed_requests():
    groups = _groups(generate_rows(CATALOG, 40, 1, "probe", pool="probe", requests_per_group=3))
    assert list(groups) == [f"probe-{i:07d}" for i in range(40)]
    for rows in groups.values():
        assert [r["source_type"] for r in rows] == ["rule_prompt"] + ["request_text"] * 3
        assert rows[0]["parts"] == parse_rule_prompt(rows[0]["text"])
        assert all(r["origin"] == "teacher" and r["id"] == pair_id(r["source_type"], r["text"]) for r in rows)
        for request in rows[1:]:
            assert request["parts"] is None
            # Eval requests never repeat a training request's combination of concepts.
            assert concept_pool([m["concept"] for m in request["meta"]["mentions"]]) == "probe"


def test_a_request_label_is_the_lexicon_rule_of_what_it_mentions_plus_bounded_noise():
    lexicon = default_lexicon()
    requests = [r for r in generate_rows(CATALOG, 200, 9, "base") if r["source_type"] == "request_text"]
    assert {r["meta"]["lang"] for r in requests} == {"en", "ja"}
    for row in requests:
        mentions = [Mention(lexicon.by_id[m["concept"]], m["role"], m["modifier"]) for m in row["meta"]["mentions"]]
        for dim, clean, noisy in zip(DIMS, label_100(mentions), row["meta"]["vector_100"], strict=True):
            assert min(max(clean - NOISE_100, 0), 100) - 0.01 <= noisy <= min(clean + NOISE_100, 100) + 0.01
            assert row["vector"][dim] == to_scale10(noisy)


def test_label_is_the_noisy_catalog_mean_converted_half_up():
    for row in generate_rows(CATALOG, 300, 9, "base"):
        if row["source_type"] != "rule_prompt":
            continue
        parts = [CATALOG.get(row["parts"][s]) for s in SLOTS]
        means = mean_vector_100(parts)
        v100 = row["meta"]["vector_100"]
        for dim, mean, noisy in zip(DIMS, means, v100, strict=True):
            assert 0 <= noisy <= 100
            # Noise in [-6, 6] around the mean (plus clamping and the 2-decimal rounding).
            assert min(max(mean - NOISE_100, 0), 100) - 0.01 <= noisy <= min(mean + NOISE_100, 100) + 0.01
            assert row["vector"][dim] == to_scale10(noisy)


def test_combinations_are_unique_while_the_pool_lasts():
    rows = [r for r in generate_rows(CATALOG, N_COMBINATIONS, 2, "base") if r["source_type"] == "rule_prompt"]
    assert len({tuple(r["parts"].values()) for r in rows}) == N_COMBINATIONS
    pool = combinations(CATALOG, "holdout")
    picked = [r for r in generate_rows(CATALOG, len(pool), 2, "h", pool="holdout") if r["source_type"] == "rule_prompt"]
    assert {tuple(r["parts"].values()) for r in picked} == {tuple(p.part_id for p in c) for c in pool}


def test_pools_split_the_combination_space_for_good():
    by_pool = {pool: {tuple(p.part_id for p in c) for c in combinations(CATALOG, pool)} for pool in POOLS}
    assert sum(len(s) for s in by_pool.values()) == N_COMBINATIONS
    assert not (by_pool["base"] & by_pool["probe"]) and not (by_pool["probe"] & by_pool["holdout"])
    assert all(len(by_pool[p]) >= 300 for p in ("probe", "holdout"))
    sample = next(iter(by_pool["probe"]))
    assert combination_pool(sample) == "probe"
    with pytest.raises(ValueError, match="unknown pool"):
        combinations(CATALOG, "train")


@given(st.integers(0, 10**9), st.integers(1, 60))
@settings(max_examples=25, deadline=None)
def test_every_generated_row_passes_the_quality_filter(seed, n_groups):
    rows = list(generate_rows(CATALOG, n_groups, seed, "base"))
    kept, report = filter_rows(rows, catalog=CATALOG)
    assert report.kept == report.seen == 2 * n_groups, report.as_dict()


def test_generate_pairs_gives_valid_pairs():
    pairs = generate_pairs(CATALOG, 20, 3, "base")
    assert len(pairs) == 40
    for pair in pairs:
        # The fast path skips validation; a full round trip through the schema must agree.
        assert Pair.model_validate(pair.model_dump(mode="json")) == pair


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="n_groups"):
        list(generate_rows(CATALOG, -1, 0, "base"))
    with pytest.raises(ValueError, match="prefix"):
        list(generate_rows(CATALOG, 1, 0, ""))
