"""The hand-written human set: its schema, and that nothing generated ever repeats it."""

from __future__ import annotations

import re

from kotone_pipeline.domain.data.base_data import build_base_set, build_eval_sets, load_human_set
from kotone_pipeline.domain.data.schemas import normalize_text
from kotone_pipeline.domain.loop.quality import near_duplicate_keys, request_text_problem

HUMAN = load_human_set()


def test_the_human_set_is_large_enough_in_both_languages():
    langs = [p.meta.get("lang") for p in HUMAN]
    assert len(HUMAN) >= 150 and langs.count("ja") >= 40 and langs.count("en") >= 100
    assert set(langs) == {"en", "ja"}


def test_every_human_row_is_a_clean_request_labelled_on_the_0_10_scale():
    assert len({p.group_id for p in HUMAN}) == len(HUMAN) == len({normalize_text(p.text) for p in HUMAN})
    for pair in HUMAN:
        assert pair.source_type == "request_text" and pair.origin == "human"
        assert re.fullmatch(r"human-\d{4}", pair.group_id)
        assert request_text_problem(pair.text) is None, pair.text
        assert all(0 <= v <= 10 for v in pair.vector.values())
        assert pair.meta.get("voice")


def test_no_human_text_appears_in_any_generated_set():
    human = {normalize_text(p.text) for p in HUMAN}
    near = {k for p in HUMAN for k in near_duplicate_keys(p.text) if k}
    generated = [p for pairs, _ in build_eval_sets().values() for p in pairs] + build_base_set()[0]
    assert not human & {normalize_text(p.text) for p in generated}
    assert not near & {near_duplicate_keys(p.text)[0] for p in generated}
