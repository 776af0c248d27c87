from __future__ import annotations

import random

import pytest

from kotone_pipeline.domain.data.dims import SLOTS
from kotone_pipeline.domain.requests.catalog import load_catalog
from kotone_pipeline.domain.requests.writer import RULE_PROMPT_HEADER, parse_rule_prompt, write_rule_prompt


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
