import pytest
from hypothesis import given
from hypothesis import strategies as st

from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.loop.quality import (
    LEAK_PATTERN,
    REASONS,
    QualityReport,
    dedup_key,
    filter_rows,
    request_text_problem,
)
from kotone_pipeline.domain.requests.catalog import load_catalog

CATALOG = load_catalog()
VECTOR = {"energy": 5, "warmth": 6, "brightness": 4, "acousticness": 8, "complexity": 3, "nostalgia": 7}
RULE = (
    "Compose a track from these catalog parts:\n"
    "style: 70s Folk (style_70s_folk)\n"
    "instrument: Warm Cello (inst_cello_warm)\n"
    "mood: Sun Glow (mood_sun_glow)\n"
    "gimmick: Rainfall Layer (gimmick_rainfall)"
)
GOOD = "Could you make a hushed, warm tune for a lantern alley?"


def _row(text: str, source_type: str = "request_text") -> dict:
    return {"group_id": "g", "source_type": source_type, "text": text, "vector": dict(VECTOR)}


CASES = {
    "too_short": _row("A warm tune."),
    "too_long": _row("Could you make a warm tune " + "please " * 40),
    "no_letters": _row("?!?! ... ---- ???? !!!!"),
    "leaks_number": _row("Could you make a warm tune at 7 out of ten?"),
    "leaks_dim_name": _row("Could you make a tune with lots of Warmth?"),
    "bad_rule_prompt": _row(RULE.replace("gimmick_rainfall", "gimmick_nonexistent"), "rule_prompt"),
    "bad_source_type": _row(GOOD, "tweet"),
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_each_rejection_reason_is_counted(reason):
    kept, report = filter_rows([_row(GOOD), CASES[reason]], catalog=CATALOG)
    assert [r["text"] for r in kept] == [GOOD]
    assert report.count(reason) == 1
    assert report.seen == 2 and report.kept == 1
    assert sum(report.count(r) for r in REASONS) == 1


def test_boundary_lengths_are_inclusive():
    exact_16, exact_260 = "Warm tune please", "W" * 260
    assert len(exact_16) == 16
    kept, report = filter_rows([_row(exact_16), _row(exact_260), _row(exact_16[:-1])], catalog=CATALOG)
    assert [r["text"] for r in kept] == [exact_16, exact_260]
    assert report.count("too_short") == 1


def test_numbers_longer_than_three_digits_and_inside_words_do_not_count_as_leaks():
    kept, report = filter_rows([_row("A 1980s style tune for the year 2024, like R2D2 hums.")], catalog=CATALOG)
    assert report.kept == 1, report.as_dict()


def test_rule_prompt_with_a_part_in_the_wrong_slot_or_two_styles_is_rejected():
    wrong_slot = RULE.replace("mood: Sun Glow (mood_sun_glow)", "mood: Warm Cello (inst_cello_warm)")
    two_styles = RULE + "\nstyle: 80s City Pop (style_80s_citypop)"
    rows = [_row(RULE, "rule_prompt"), _row(wrong_slot, "rule_prompt"), _row(two_styles, "rule_prompt")]
    kept, report = filter_rows(rows, catalog=CATALOG)
    assert [r["text"] for r in kept] == [RULE]
    assert report.count("bad_rule_prompt") == 2


def test_duplicates_are_caught_across_case_and_whitespace_per_source_type():
    rows = [
        _row(GOOD),
        _row(GOOD.upper()),
        _row("  Could you make a hushed,   warm tune\nfor a lantern alley?  "),
        _row(RULE, "rule_prompt"),
        _row(RULE, "rule_prompt"),
    ]
    kept, report = filter_rows(rows, catalog=CATALOG)
    assert [r["source_type"] for r in kept] == ["request_text", "rule_prompt"]
    assert report.count("duplicate") == 3
    assert report.kept_by_source_type == {"request_text": 1, "rule_prompt": 1}


def test_existing_texts_count_as_duplicates():
    other = "Please compose a bright, sparkling loop for a skate park."
    kept, report = filter_rows([_row(GOOD), _row(other)], existing=[GOOD.casefold()], catalog=CATALOG)
    assert [r["text"] for r in kept] == [other]
    assert report.count("duplicate") == 1


def test_pairs_are_filtered_like_dicts():
    pair = Pair(group_id="g", source_type="request_text", text=GOOD, vector=Vector(**VECTOR))
    kept, report = filter_rows([pair, pair.model_copy()], catalog=CATALOG)
    assert kept == [pair] and report.count("duplicate") == 1


def test_report_forms_list_every_reason():
    _, report = filter_rows([_row(GOOD), CASES["leaks_number"]], catalog=CATALOG)
    flat = report.as_dict()
    assert flat["seen"] == 2 and flat["kept"] == 1 and flat["leaks_number"] == 1
    assert set(REASONS) <= set(flat)
    markdown = report.to_markdown()
    assert "| rejected: leaks_number | 1 |" in markdown and "| kept | 1 |" in markdown
    assert QualityReport.model_validate(report.model_dump()) == report


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["energy", "Warmth", "NOSTALGIA", "acousticness", "7", "42", "1234", "x9"]),
            st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
        ),
        max_size=12,
    ).map(" ".join)
)
def test_leak_check_agrees_with_the_design_pattern(text):
    padded = f"Could you make a tune {text}"[:260]
    match = LEAK_PATTERN.search(padded)
    expected = None if match is None else ("leaks_dim_name" if match.group(1) else "leaks_number")
    reason = request_text_problem(padded)
    assert (reason if reason in ("leaks_dim_name", "leaks_number") else None) == expected


def test_dedup_key_collapses_whitespace_and_case():
    assert dedup_key("  A  Warm\tTune ") == dedup_key("a warm tune")


def test_near_duplicate_requests_are_removed_and_counted() -> None:
    rows = [
        {"source_type": "request_text", "text": "Calm piano for a rainy evening, please!"},
        {"source_type": "request_text", "text": "calm piano for a rainy evening please"},  # punctuation/case only
        {"source_type": "request_text", "text": "For a rainy evening, calm piano please."},  # same words reordered
        {"source_type": "request_text", "text": "Calm piano for a snowy evening, please!"},  # a different request
    ]
    kept, report = filter_rows(rows)
    assert [r["text"] for r in kept] == [rows[0]["text"], rows[3]["text"]]
    assert report.count("near_duplicate") == 2 and report.as_dict()["near_duplicate"] == 2
    _, against_existing = filter_rows(rows[1:2], existing=["CALM piano, for a rainy evening; please"])
    assert against_existing.count("near_duplicate") == 1
