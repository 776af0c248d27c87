"""Worked examples of the request label rule (docs/design.md § Teacher), each computed by hand in its comment."""

from __future__ import annotations

import random

import pytest

from kotone_pipeline.domain.requests.label_rule import Mention, apply_noise, label, label_100
from kotone_pipeline.domain.requests.lexicon import Concept


def concept(cid: str, kind: str = "mood", **dims: int) -> Concept:
    return Concept(id=cid, kind=kind, en=(cid,), ja=(cid,), dims=dims, note="test concept")


CALM = concept("calm", energy=20, warmth=60)
BEDROOM = concept("bedroom", "scene", energy=30, brightness=40)
EDM = concept("edm", "genre", energy=90, acousticness=10)
FRANTIC = concept("frantic", energy=100)
EIGHTIES = concept("eighties", "era", nostalgia=80)
MODERN_POP = concept("modern_pop", "genre", nostalgia=40)


def test_one_plain_descriptor_gives_its_values_and_50_where_it_says_nothing():
    # energy 20 -> 2, warmth 60 -> 6, the four other dims 50 -> 5.
    assert label([Mention(CALM)]) == (2, 6, 5, 5, 5, 5)
    assert label([]) == (5, 5, 5, 5, 5, 5)


def test_salience_weights_a_scene_at_0_6():
    # energy: (1.0 x 20 + 0.6 x 30) / 1.6 = 23.75 -> 2; brightness only the scene: 40 -> 4.
    values = label_100([Mention(CALM), Mention(BEDROOM, "scene")])
    assert values[0] == pytest.approx(23.75) and values[2] == 40
    assert label([Mention(CALM), Mention(BEDROOM, "scene")]) == (2, 6, 4, 5, 5, 5)


def test_a_reference_weighs_0_8():
    # nostalgia: (1.0 x 40 + 0.8 x 80) / 1.8 = 57.78 -> 6.
    values = label_100([Mention(MODERN_POP), Mention(EIGHTIES, "reference")])
    assert values[5] == pytest.approx(104 / 1.8)
    assert label([Mention(MODERN_POP), Mention(EIGHTIES, "reference")])[5] == 6


def test_an_intensifier_moves_the_offset_by_1_4_and_a_hedge_by_0_5():
    # very calm: energy 50 + 1.4 x (-30) = 8 -> 1; warmth 50 + 1.4 x 10 = 64 -> 6.
    assert label_100([Mention(CALM, modifier="intensified")])[:2] == pytest.approx([8, 64])
    assert label([Mention(CALM, modifier="intensified")])[:2] == (1, 6)
    # a bit calm: energy 50 + 0.5 x (-30) = 35 -> 4 (half-up); warmth 55 -> 6.
    assert label([Mention(CALM, modifier="hedged")])[:2] == (4, 6)


def test_a_negation_replaces_the_offset_by_minus_half_of_it():
    # "no EDM": energy 50 - 0.5 x 40 = 30 -> 3; acousticness 50 - 0.5 x (-40) = 70 -> 7.
    assert label([Mention(EDM, modifier="negated")]) == (3, 5, 5, 7, 5, 5)
    plain, negated = label_100([Mention(EDM)]), label_100([Mention(EDM, modifier="negated")])
    for p, n in zip(plain, negated, strict=True):
        assert n - 50 == pytest.approx(-0.5 * (p - 50))


def test_not_too_also_caps_the_dim_at_50_plus_0_3_of_the_offset():
    # "frantic but not too EDM": energy (100 + 30) / 2 = 65, capped at 50 + 0.3 x 40 = 62 -> 6.
    mentions = [Mention(FRANTIC), Mention(EDM, modifier="not_too")]
    assert label_100(mentions)[0] == pytest.approx(62)
    assert label(mentions)[0] == 6
    # Without the cap ("no EDM") the same request says 65 -> 7.
    assert label([Mention(FRANTIC), Mention(EDM, modifier="negated")])[0] == 7
    # acousticness: EDM's offset is -40, so the bound is a floor at 38; 70 is above it.
    assert label_100(mentions)[3] == pytest.approx(70)


def test_the_label_does_not_depend_on_the_order_of_mentions():
    mentions = [
        Mention(CALM),
        Mention(BEDROOM, "scene"),
        Mention(EDM, modifier="hedged"),
        Mention(EIGHTIES, "reference"),
    ]
    for seed in range(20):
        shuffled = list(mentions)
        random.Random(seed).shuffle(shuffled)
        assert label_100(shuffled) == label_100(mentions)


def test_noise_stays_within_its_bound_and_the_scale():
    rng = random.Random(3)
    for _ in range(200):
        clean = [rng.uniform(0, 100) for _ in range(6)]
        noisy = apply_noise(clean, rng, 6.0)
        assert all(0 <= n <= 100 and abs(n - min(max(c, 0), 100)) <= 6.01 for c, n in zip(clean, noisy, strict=True))
