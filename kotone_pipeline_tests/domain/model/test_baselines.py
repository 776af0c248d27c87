import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.model.baselines import ConstantBaseline, RuleBaseline, median_vector
from kotone_pipeline.domain.model.predictor import PredictInput, parse_completion
from kotone_pipeline.domain.requests.catalog import load_catalog
from kotone_pipeline.domain.requests.composer import Composer
from kotone_pipeline.domain.requests.label_rule import label
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.teacher import generate_pairs

CATALOG = load_catalog()
FALLBACK = Vector(energy=1, warmth=2, brightness=3, acousticness=4, complexity=6, nostalgia=9)
RULE = RuleBaseline(CATALOG, fallback=FALLBACK)
COMPOSER = Composer(default_lexicon(), noise_100=0)


def _pair(values, text="x" * 20) -> Pair:
    return Pair(group_id="g", source_type="request_text", text=text, vector=Vector.from_values(values))


def test_constant_baseline_predicts_the_half_up_median_for_every_input():
    # Medians: energy (4, 5) -> 4.5 -> 5 half-up; warmth (2, 9) -> 5.5 -> 6; others exact.
    train = [_pair([4, 2, 7, 0, 10, 3]), _pair([5, 9, 7, 0, 10, 3])]
    baseline = ConstantBaseline(train)
    assert baseline.model_id == "baseline-constant"
    preds = baseline.predict([PredictInput("anything", "request_text"), PredictInput("x", "rule_prompt")])
    assert [p.vector.values() for p in preds] == [(5, 6, 7, 0, 10, 3)] * 2
    assert all(parse_completion(p.raw) == p.vector and p.latency_ms >= 0 for p in preds)


def test_median_vector_needs_data():
    try:
        median_vector([])
    except ValueError as exc:
        assert "at least one" in str(exc)
    else:
        raise AssertionError("median_vector([]) must fail")


def test_rule_baseline_reads_rule_prompts_as_the_rounded_catalog_mean():
    pairs = [p for p in generate_pairs(CATALOG, 200, 5, "base") if p.source_type == "rule_prompt"]
    preds = RULE.predict([PredictInput(p.text, p.source_type) for p in pairs])
    for pair, pred in zip(pairs, preds, strict=True):
        parts = [CATALOG.get(pair.parts[s]) for s in ("style", "instrument", "mood", "gimmick")]
        for dim, predicted in zip(DIMS, pred.vector.values(), strict=True):
            defined = [p.values[dim] for p in parts if p.values[dim] is not None]
            mean = sum(defined) / len(defined) if defined else 50
            assert predicted == int(mean / 10 + 0.5)
    # The label is that mean plus at most 6/100 of noise: never more than one step away.
    assert all(
        abs(a - b) <= 1
        for pair, pred in zip(pairs, preds, strict=True)
        for a, b in zip(pair.vector.values(), pred.vector.values(), strict=True)
    )


def test_rule_baseline_falls_back_on_unparseable_or_unknown_rule_prompts():
    bad = [
        "style: 70s Folk (style_70s_folk)",
        "Compose a track:\nstyle: A (style_a)\ninstrument: B (inst_b)\nmood: C (mood_c)\ngimmick: D (gimmick_d)",
    ]
    preds = RULE.predict([PredictInput(text, "rule_prompt") for text in bad])
    assert [p.vector for p in preds] == [FALLBACK, FALLBACK]


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_rule_baseline_reads_composed_requests_with_the_label_rule(seed):
    composed = COMPOSER.compose(random.Random(seed), register="one_liner", lang="en")
    predicted = RULE.predict([PredictInput(composed.text, "request_text")])[0].vector
    # Without noise the composer's label is the rule applied to its plan; the reader sees the same
    # concepts in a plain one-liner, so it reproduces that label (label noise aside).
    assert predicted.values() == label(composed.plan.mentions), composed.text


def test_rule_baseline_reads_most_japanese_requests_exactly():
    # Japanese forms are matched as substrings (no word boundaries), so a longer form can hide a
    # shorter one; the reader still recovers the composer's label for the large majority.
    rng = random.Random(7)
    composed = [COMPOSER.compose(rng, lang="ja") for _ in range(300)]
    exact = sum(RULE.predict_vector(c.text, "request_text").values() == label(c.plan.mentions) for c in composed)
    assert exact / len(composed) >= 0.85


def test_rule_baseline_reads_people_s_words_not_a_codebook():
    calm, frantic = (
        RULE.predict([PredictInput(t, "request_text")])[0].vector
        for t in ("something calm for a bedtime story app", "a frantic boss battle, fast and chaotic")
    )
    assert calm.energy <= 3 < 7 <= frantic.energy


def test_rule_baseline_from_train_uses_the_train_median():
    train = [_pair([4, 2, 7, 0, 10, 3]), _pair([5, 9, 7, 0, 10, 3])]
    baseline = RuleBaseline.from_train(train, CATALOG)
    assert baseline.model_id == "baseline-rule"
    pred = baseline.predict([PredictInput("Nothing to read here at all.", "request_text")])[0]
    assert pred.vector.values() == (5, 6, 7, 0, 10, 3)
    assert parse_completion(pred.raw) == pred.vector
    assert RuleBaseline(CATALOG).fallback == Vector.neutral()
