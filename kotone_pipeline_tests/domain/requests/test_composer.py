from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import to_scale10
from kotone_pipeline.domain.loop.quality import request_text_problem
from kotone_pipeline.domain.requests.composer import Composer
from kotone_pipeline.domain.requests.label_rule import Mention, label, label_100
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.phrasing import EN_REGISTERS, JA_REGISTERS, REGISTERS, Plan

LEXICON = default_lexicon()
COMPOSER = Composer(LEXICON)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_every_request_is_clean_and_labelled_by_the_rule_of_its_plan(seed):
    composed = COMPOSER.compose(random.Random(seed))
    assert request_text_problem(composed.text) is None, composed.text
    assert all(0 <= v <= 10 for v in composed.vector)
    clean = label_100(composed.plan.mentions)
    assert all(abs(c - n) <= 6.01 for c, n in zip(clean, composed.values_100, strict=True))
    assert composed.vector == tuple(to_scale10(v) for v in composed.values_100)
    assert 1 <= len(composed.plan.by_role("descriptor")) <= 4
    # Every concept of the plan is named in the text through the form the plan chose (typos aside).
    for m in composed.plan.mentions if composed.plan.register != "typos" else ():
        form = composed.plan.forms[m.concept.id]
        core = form.split(" ", 1)[1] if form.split(" ", 1)[0] in ("a", "an", "the") else form
        assert core.casefold() in composed.text.casefold(), (core, composed.text)


def test_the_same_seed_composes_the_same_request_and_another_seed_does_not():
    first = [COMPOSER.compose(random.Random(11)).text for _ in range(3)]
    assert first == [COMPOSER.compose(random.Random(11)).text for _ in range(3)]
    rng_a, rng_b = random.Random(11), random.Random(12)
    assert [COMPOSER.compose(rng_a).text for _ in range(20)] != [COMPOSER.compose(rng_b).text for _ in range(20)]


@pytest.mark.parametrize(("share", "n"), [(0.0, 200), (0.2, 1500), (0.5, 1500), (1.0, 200)])
def test_the_japanese_share_is_honoured(share, n):
    # 0 and 1 are exact, so a few hundred requests show them; a share between needs 1500 for +-0.04.
    rng = random.Random(5)
    langs = Counter(Composer(LEXICON, ja_share=share).compose(rng).plan.lang for _ in range(n))
    assert abs(langs["ja"] / n - share) <= 0.04


def test_requests_come_in_every_register_and_both_languages():
    rng = random.Random(9)
    plans = [COMPOSER.compose(rng).plan for _ in range(3000)]
    assert {p.register for p in plans} == set(REGISTERS)
    assert len(EN_REGISTERS) >= 12 and all(p.register in JA_REGISTERS for p in plans if p.lang == "ja")
    ja_texts = [COMPOSER.compose(rng, lang="ja").text for _ in range(50)]
    assert all(any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in t) for t in ja_texts)


def test_modifiers_show_in_the_text_the_way_the_rule_reads_them():
    rng = random.Random(21)
    seen = Counter()
    for _ in range(3000):
        composed = COMPOSER.compose(rng, lang="en")
        for m in composed.plan.mentions:
            seen[m.modifier] += 1
            if m.modifier == "not_too" and composed.plan.register != "typos":
                assert "not too" in composed.text or "not overly" in composed.text or "not excessively" in composed.text
    assert {"plain", "intensified", "hedged", "negated", "not_too"} <= set(seen)


def test_a_negated_descriptor_moves_the_label_to_the_other_side_of_the_middle():
    calm = LEXICON.by_id["mood_calm"]
    plain = Plan(lang="en", register="one_liner", mentions=(Mention(calm),), forms={calm.id: "calm"})
    negated = Plan(
        lang="en", register="one_liner", mentions=(Mention(calm, modifier="negated"),), forms={calm.id: "calm"}
    )
    p, n = label(plain.mentions), label(negated.mentions)
    energy = 0
    assert p[energy] < 5 < n[energy]
    assert COMPOSER.finish(negated, random.Random(1)).text.count("calm") == 1


def test_compose_for_aims_at_the_target_vector():
    rng = random.Random(4)
    errors = []
    for _ in range(150):
        target = tuple(rng.randint(0, 10) for _ in range(6))
        composed = COMPOSER.compose_for(target, rng)
        assert composed is not None and request_text_problem(composed.text) is None
        errors.append(sum(abs(a - b) for a, b in zip(composed.vector, target, strict=True)) / 6)
    assert sum(errors) / len(errors) < 1.0


def test_a_narrow_accept_rule_that_nothing_passes_ends_with_a_clear_error():
    with pytest.raises(RuntimeError, match="could not compose"):
        COMPOSER.compose(random.Random(0), accept=lambda plan: False)
    with pytest.raises(ValueError, match="ja_share"):
        Composer(LEXICON, ja_share=1.5)


def test_five_best_orders_like_sorting_every_option_ties_included() -> None:
    import numpy as np

    from kotone_pipeline.domain.requests.composer import _five_best

    rng = np.random.default_rng(3)
    modifiers = ("plain", "intensified", "hedged")
    for _ in range(200):
        dists = rng.integers(0, 6, size=(3, 12)).astype(float)  # many ties on purpose
        dists[:, rng.integers(0, 12, size=3)] = np.inf  # concepts already taken
        every = sorted(
            (float(dists[r, c]), c, modifiers[r]) for r in range(3) for c in range(12) if np.isfinite(dists[r, c])
        )
        assert _five_best(dists, modifiers) == every[:5]
    assert _five_best(np.full((3, 4), np.inf), modifiers) == []
