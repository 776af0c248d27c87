from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalSummary, LocalHyperParams, LoraHyperParams
from kotone_pipeline.domain.loop.hparams import campaign_variants, next_local_hparams, next_lora_hparams


def summary(mse: float = 0.02, valid: float = 1.0, p95: float = 100.0, name: str = "m") -> EvalSummary:
    return EvalSummary(
        model_id=name,
        dataset="holdout",
        rows=100,
        vector_mae=1.0,
        mae_raw=10.0,
        mse_norm=mse,
        per_dim_mae=dict.fromkeys(DIMS, 1.0),
        per_dim_r2=dict.fromkeys(DIMS, 0.0),
        mean_r2=0.0,
        exact_match_rate=0.0,
        within_one_rate=0.5,
        json_valid_rate=valid,
        p50_latency_ms=p95 / 2,
        p95_latency_ms=p95,
    )


GOOD = summary(mse=0.01)
BASELINE = summary(mse=0.02, name="baseline-constant")


def test_no_rule_fires_for_a_good_model_without_hard_dims():
    decision = next_lora_hparams(LoraHyperParams(), GOOD, BASELINE, [])
    assert decision.trainer == "lora"
    assert decision.next == decision.current == LoraHyperParams().model_dump()
    assert decision.patch == {}
    assert len(decision.reasons) == 1 and decision.reasons[0].startswith("no rule fired")


def test_r1_invalid_json_lowers_lr_and_adds_an_epoch():
    decision = next_lora_hparams(LoraHyperParams(), summary(mse=0.01, valid=0.5), BASELINE, [])
    assert decision.patch == {"learning_rate": pytest.approx(2e-5 * 0.6), "epochs": 3}
    assert decision.reasons[0].startswith("R1: json_valid_rate 0.500 < 0.98")


def test_r1_floors_the_lr_and_caps_epochs():
    current = LoraHyperParams(learning_rate=1.2e-6, epochs=4)
    decision = next_lora_hparams(current, summary(mse=0.01, valid=0.0), BASELINE, [])
    assert decision.next["learning_rate"] == 1e-6  # 0.72e-6 floored
    assert decision.next["epochs"] == 4
    assert decision.patch == {"learning_rate": 1e-6}
    # An explicit larger epoch count is never lowered by the cap.
    assert next_lora_hparams(LoraHyperParams(epochs=6), summary(valid=0.0), None, []).next["epochs"] == 6


def test_r2_grows_r_when_not_better_than_the_baseline():
    decision = next_lora_hparams(LoraHyperParams(), summary(mse=0.02), BASELINE, [])  # equal counts as worse
    assert decision.patch == {"lora_r": 32, "lora_alpha": 64}
    assert decision.reasons[0].startswith("R2: candidate mse_norm 0.02000 >= baseline 'baseline-constant'")
    already = next_lora_hparams(LoraHyperParams(lora_r=32, lora_alpha=64), summary(mse=0.03), BASELINE, [])
    assert already.patch == {} and "already 32" in already.reasons[0]


def test_r4_slow_model_keeps_r():
    slow = summary(mse=0.03, p95=1500.0)
    decision = next_lora_hparams(LoraHyperParams(), slow, BASELINE, [])
    assert decision.patch == {}
    assert decision.reasons[0].startswith("R4: p95 latency 1500 ms > 1200 ms")
    # The explicit latency argument wins over the candidate's own p95.
    assert next_lora_hparams(LoraHyperParams(), slow, BASELINE, [], p95_latency_ms=300.0).patch["lora_r"] == 32
    fast_but_measured_slow = next_lora_hparams(LoraHyperParams(), summary(mse=0.03), BASELINE, [], 1201.0)
    assert "lora_r" not in fast_but_measured_slow.patch


def test_r3_hard_dims_need_at_least_two_epochs():
    decision = next_lora_hparams(LoraHyperParams(epochs=1), GOOD, BASELINE, ["energy", "nostalgia"])
    assert decision.patch == {"epochs": 2}
    assert decision.reasons == ["R3: hard dims energy, nostalgia: epochs 1 -> 2"]
    assert next_lora_hparams(LoraHyperParams(epochs=3), GOOD, BASELINE, ["energy"]).patch == {}


def test_rules_combine_and_each_leaves_a_reason():
    bad = summary(mse=0.05, valid=0.9)
    decision = next_lora_hparams(LoraHyperParams(epochs=1), bad, BASELINE, ["warmth"])
    assert [r[:2] for r in decision.reasons] == [
        "R1",
        "R2",
    ]  # R1 already lifts epochs 1 -> 2, so R3 has no work
    assert decision.patch == {
        "learning_rate": pytest.approx(1.2e-5),
        "epochs": 2,
        "lora_r": 32,
        "lora_alpha": 64,
    }


def test_first_cycle_without_candidate_says_so():
    decision = next_lora_hparams(LoraHyperParams(), None, BASELINE, [])
    assert decision.patch == {}
    assert "no candidate eval" in decision.reasons[0]


def test_local_rules():
    current = LocalHyperParams(alpha=2.0, word_ngram_max=1, use_char=False)
    worse = next_local_hparams(current, summary(mse=0.03), BASELINE, [])
    assert worse.trainer == "local"
    assert worse.patch == {"alpha": 1.0, "use_char": True}
    assert worse.reasons[0].startswith("L1:")
    hard = next_local_hparams(current, GOOD, BASELINE, ["energy"])
    assert hard.patch == {"word_ngram_max": 2}
    assert next_local_hparams(LocalHyperParams(alpha=0.0015), summary(mse=0.03), BASELINE, []).next["alpha"] == 1e-3
    assert next_local_hparams(LocalHyperParams(alpha=1e-4), summary(mse=0.03), BASELINE, []).patch == {}
    calm = next_local_hparams(LocalHyperParams(), GOOD, BASELINE, [])
    assert calm.patch == {} and calm.reasons[0].startswith("no rule fired")


def test_campaign_variants_alpha_ladder():
    base = LocalHyperParams(alpha=2.0, word_ngram_max=3)
    variants = campaign_variants(base, 5)
    assert variants[0] == base
    assert [v.alpha for v in variants] == [2.0, 1.0, 4.0, 0.5, 8.0]
    assert all(v.word_ngram_max == 3 for v in variants)
    assert campaign_variants(base, 0) == []
    with pytest.raises(ValueError):
        campaign_variants(base, 100)


@settings(max_examples=50, deadline=None)
@given(st.floats(1e-3, 100), st.integers(1, 9))
def test_campaign_variants_are_distinct_and_deterministic(alpha, n):
    base = LocalHyperParams(alpha=alpha)
    variants = campaign_variants(base, n)
    assert len(variants) == n and variants[0] == base
    assert len({v.alpha for v in variants}) == n
    assert variants == campaign_variants(base, n)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(1e-7, 1e-3),
    st.integers(1, 6),
    st.sampled_from([8, 16, 32, 64]),
    st.floats(0, 1),
    st.floats(0, 0.2),
    st.lists(st.sampled_from(DIMS), max_size=2),
)
def test_lora_decision_is_consistent(lr, epochs, r, valid, mse, hard):
    current = LoraHyperParams(learning_rate=lr, epochs=epochs, lora_r=r, lora_alpha=2 * r)
    decision = next_lora_hparams(current, summary(mse=mse, valid=valid), BASELINE, hard)
    nxt = decision.next
    assert {k: v for k, v in nxt.items() if decision.current[k] != v} == decision.patch
    assert nxt["learning_rate"] >= min(lr, 1e-6) and nxt["learning_rate"] <= lr
    assert nxt["lora_r"] >= r  # never shrinks
    assert nxt["epochs"] >= epochs
    if hard:
        assert nxt["epochs"] >= 2
    assert decision.reasons
