"""Lexicon patches from people's labels: proposed with evidence and grouped-CV gain, versioned, stamped."""

from __future__ import annotations

import pytest

from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.requests.lexicon import LexiconError, default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import (
    LEXICON_META_KEY,
    apply_patch,
    lexicon_version,
    propose_lexicon_patch,
    stamp_lexicon_version,
)
from kotone_pipeline.domain.requests.lexicon_reader import LexiconReader

SETTINGS = ["for my cafe", "for a game menu", "for a podcast intro", "for a shop", "for an ad", "for a vlog"]


def _people_rows() -> list[Pair]:
    """36 rows by 12 writers: "zorbly" (unknown to the lexicon) means energy 10 and warmth 1 to them;
    "happy" (known) they rate as the lexicon does except brightness, always 5 (the lexicon says 9)."""
    reader = LexiconReader(default_lexicon())
    rows = []
    for i in range(36):
        setting = SETTINGS[i % len(SETTINGS)]
        text = f"a zorbly tune {setting}, take {i}" if i % 2 == 0 else f"a happy tune {setting}, take {i}"
        values = list(reader.read(text) or (5,) * 6)
        if "zorbly" in text:
            values[0], values[1] = 10, 1
        else:
            values[2] = 5
        vector = Vector.from_values(values)
        rows.append(Pair(group_id=f"writer-{i % 12}", source_type="request_text", text=text, vector=vector,
                         origin="human"))  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def patch():
    return propose_lexicon_patch(_people_rows(), default_lexicon())


def test_proposes_an_unknown_phrase_with_fitted_offsets_and_evidence(patch) -> None:
    (entry,) = [e for e in patch.entries if e.phrase == "zorbly"]
    assert entry.action == "add" and entry.lang == "en"
    assert entry.dims["energy"] >= 80 and entry.dims["warmth"] <= 30
    rows = _people_rows()
    assert sorted(entry.evidence) == sorted(p.id for p in rows if "zorbly" in p.text)
    assert entry.groups == 6 and entry.cv_gain > 0


def test_proposes_an_offset_correction_for_a_misread_concept(patch) -> None:
    (entry,) = [e for e in patch.entries if e.id == "adjust:mood_happy"]
    assert entry.previous == {"brightness": 86} and entry.dims["brightness"] <= 60
    assert entry.cv_gain > 0
    assert patch.cv_patched_mae < patch.cv_base_mae
    assert patch.rows_by_origin == {"human": 36} and patch.groups == 12 and patch.folds == 5


def test_a_patch_changes_the_lexicon_only_when_applied(patch) -> None:
    base = default_lexicon()
    before = lexicon_version(base)
    patched = apply_patch(base, patch.entries)
    assert lexicon_version(default_lexicon()) == before  # proposing and applying leave the base as it was
    assert lexicon_version(patched) != before
    assert lexicon_version(apply_patch(base, patch.entries)) == lexicon_version(patched)  # content-addressed
    text = "a zorbly tune for the lobby"
    assert LexiconReader(base).read(text) is None
    assert LexiconReader(patched).read(text)[0] >= 8


def test_a_patch_that_reuses_a_known_form_is_refused(patch) -> None:
    (entry,) = [e for e in patch.entries if e.phrase == "zorbly"]
    clash = entry.model_copy(update={"id": "add:x", "concept_id": "people_clash", "phrase": "happy"})
    with pytest.raises(LexiconError, match="happy"):
        apply_patch(default_lexicon(), [clash])


def test_too_few_groups_propose_nothing() -> None:
    rows = [p.model_copy(update={"group_id": "one-writer"}) for p in _people_rows()]
    patch = propose_lexicon_patch(rows, default_lexicon())
    assert patch.entries == [] and patch.folds == 0


def test_stamp_marks_rule_labelled_rows_only() -> None:
    teacher = Pair(group_id="g", source_type="request_text", text="a happy tune", vector=Vector.neutral())
    person = teacher.model_copy(update={"origin": "reviewed", "group_id": "h"})
    stamped = stamp_lexicon_version([teacher, person], "lex-aaaa")
    assert stamped[0].meta[LEXICON_META_KEY] == "lex-aaaa"
    assert LEXICON_META_KEY not in stamped[1].meta
    assert stamp_lexicon_version(stamped, "lex-bbbb")[0].meta[LEXICON_META_KEY] == "lex-aaaa"  # labelled once
