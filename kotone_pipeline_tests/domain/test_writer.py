import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kotone_pipeline.domain.catalog import load_catalog
from kotone_pipeline.domain.dims import DIMS, SLOTS
from kotone_pipeline.domain.quality import LEAK_PATTERN, request_text_problem
from kotone_pipeline.domain.writer import (
    LEXICON,
    REVERSE_LEXICON,
    RULE_PROMPT_HEADER,
    SCENES,
    TEMPLATES,
    USES,
    mentioned_dims,
    parse_rule_prompt,
    read_request_phrases,
    write_request_text,
    write_rule_prompt,
)

vectors = st.lists(st.integers(0, 10), min_size=6, max_size=6)
seeds = st.integers(0, 2**32 - 1)
# Words that may repeat across entries: they carry no value on their own.
FUNCTION_WORDS = {"a", "an", "and", "of", "the"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@given(vectors, seeds)
@settings(max_examples=400)
def test_request_text_never_leaks_and_passes_the_text_checks(values, seed):
    text = write_request_text(values, random.Random(seed))
    assert LEAK_PATTERN.search(text) is None, text
    assert not re.search(r"\d", text)
    assert 16 <= len(text) <= 260
    assert request_text_problem(text) is None


@given(vectors, seeds)
@settings(max_examples=400)
def test_mentioned_dims_are_recovered_exactly_and_nothing_else_is_read(values, seed):
    text = write_request_text(values, random.Random(seed))
    expected = {dim: values[DIMS.index(dim)] for dim in mentioned_dims(values)}
    assert read_request_phrases(text) == expected, text


@given(vectors)
def test_mention_choice_follows_salience(values):
    mentioned = mentioned_dims(values)
    salience = {d: abs(v - 5) for d, v in zip(DIMS, values, strict=True)}
    off_centre = [d for d in DIMS if salience[d] >= 1]
    assert len(mentioned) == min(max(len(off_centre), 2), 4)
    # Most salient first, and nothing left out is more salient than what is mentioned.
    assert [salience[d] for d in mentioned] == sorted((salience[d] for d in mentioned), reverse=True)
    left_out = [salience[d] for d in DIMS if d not in mentioned]
    assert not left_out or max(left_out) <= min(salience[d] for d in mentioned)
    if len(off_centre) <= 4:
        assert all(values[DIMS.index(d)] == 5 for d in DIMS if d not in mentioned)


def test_same_rng_state_gives_the_same_text_and_different_seeds_vary():
    values = [9, 2, 7, 5, 5, 8]
    assert write_request_text(values, random.Random(3)) == write_request_text(values, random.Random(3))
    texts = {write_request_text(values, random.Random(seed)) for seed in range(40)}
    assert len(texts) > 20


def test_every_value_of_every_dim_has_its_own_phrases():
    for dim in DIMS:
        assert sorted(LEXICON[dim]) == list(range(11))
        for value, phrases in LEXICON[dim].items():
            assert len(phrases) >= 2, (dim, value)
            assert len(set(phrases)) == len(phrases)
    assert len(REVERSE_LEXICON) == sum(len(p) for d in LEXICON.values() for p in d.values())


def test_no_content_word_is_shared_between_values_or_with_the_frame():
    owner: dict[str, tuple[str, int]] = {}
    for phrase, entry in REVERSE_LEXICON.items():
        for word in _words(phrase) - FUNCTION_WORDS:
            assert owner.setdefault(word, entry) == entry, f"{word!r} used by {owner[word]} and {entry}"
    frame_words = set().union(*(_words(t) for t in SCENES + USES + TEMPLATES))
    assert not (set(owner) & frame_words)


@pytest.mark.parametrize("bad", [[5] * 5, [5] * 7, [11, 5, 5, 5, 5, 5], [-1, 5, 5, 5, 5, 5], [5.5] * 6])
def test_request_writer_rejects_vectors_off_the_scale(bad):
    with pytest.raises(ValueError):
        write_request_text(bad, random.Random(0))


def test_rule_prompt_round_trips_for_every_slot_combination_sample():
    catalog = load_catalog()
    rng = random.Random(5)
    for _ in range(200):
        parts = {slot: rng.choice(catalog.by_slot[slot]) for slot in SLOTS}
        text = write_rule_prompt(parts)
        lines = text.splitlines()
        assert lines[0] == RULE_PROMPT_HEADER
        assert lines[1:] == [f"{s}: {parts[s].name} ({parts[s].part_id})" for s in SLOTS]
        assert parse_rule_prompt(text) == {s: p.part_id for s, p in parts.items()}


def test_parse_rule_prompt_needs_exactly_one_part_per_slot():
    good = "\n".join(
        [
            "style: 70s Folk (style_70s_folk)",
            "instrument: Warm Cello (inst_cello_warm)",
            "mood: Sun Glow (mood_sun_glow)",
            "gimmick: Rainfall Layer (gimmick_rainfall)",
        ]
    )
    assert parse_rule_prompt(good) is not None
    assert parse_rule_prompt(good.replace("mood: Sun Glow (mood_sun_glow)", "")) is None
    assert parse_rule_prompt(good + "\nstyle: 80s City Pop (style_80s_citypop)") is None
    assert parse_rule_prompt("Could you make a warm tune?") is None
    with pytest.raises(ValueError, match="gimmick"):
        catalog = load_catalog()
        write_rule_prompt({s: catalog.by_slot[s][0] for s in SLOTS[:3]})
