from __future__ import annotations

from pathlib import Path

import pytest

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.loop.quality import LEAK_PATTERN
from kotone_pipeline.domain.requests.catalog import load_catalog
from kotone_pipeline.domain.requests.lexicon import KINDS, LexiconError, default_lexicon, load_lexicon

LEXICON = default_lexicon()
MINIMUM = {"genre": 80, "era": 30, "instrument": 60, "scene": 60, "use": 50, "mood": 80, "texture": 40}


def test_the_committed_lexicon_has_every_kind_in_the_asked_numbers():
    counts = {kind: len(LEXICON.by_kind[kind]) for kind in KINDS}
    assert all(counts[kind] >= n for kind, n in MINIMUM.items()), counts
    assert sum(counts[k] for k in MINIMUM) >= 400


def test_every_concept_moves_a_dim_and_has_both_languages():
    for c in LEXICON:
        assert c.dims and set(c.dims) <= set(DIMS), c.id
        assert c.en and c.ja and c.note, c.id


def test_no_surface_form_names_two_concepts():
    owner: dict[str, str] = {}
    for c in LEXICON:
        for form in (*c.en, *c.ja):
            key = form.casefold().removeprefix("the ").removeprefix("an ").removeprefix("a ")
            assert owner.setdefault(key, c.id) == c.id, (form, owner[key], c.id)


def test_the_catalog_parts_are_concepts_with_the_catalog_s_values():
    parts = LEXICON.by_kind["part"]
    catalog = load_catalog()
    assert {c.id for c in parts} == {p.part_id for p in catalog.parts}
    for c in parts:
        part = catalog.get(c.id)
        assert c.slot == part.slot
        assert c.dims == {d: v for d, v in part.values.items() if v is not None}
        assert part.name.casefold() in {f.casefold() for f in c.en}


def test_every_concept_can_be_written_without_leaking_a_number():
    for c in LEXICON:
        assert any(not LEAK_PATTERN.search(f) for f in c.en), c.id
        assert any(not LEAK_PATTERN.search(f) for f in c.ja), c.id


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """kind: mood
concepts:
  - id: mood_calm
    en: [calm]
    ja: [穏やかな]
    dims: {energy: 20, warmth: 60}
    note: Slow and soft.
"""


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("dims: {energy: 120}", "concept 'mood_bad': dims: energy: expected an integer 0..100, got 120"),
        ("dims: {tempo: 60}", "concept 'mood_bad': dims: unknown dim(s) tempo"),
        ("dims: {}", "concept 'mood_bad': dims"),
        ("dims: {energy: 7.5}", "concept 'mood_bad': dims"),
    ],
)
def test_a_bad_entry_names_the_file_the_concept_and_the_field(tmp_path, entry, expected):
    bad = f"""  - id: mood_bad
    en: [bad]
    ja: [悪い]
    {entry}
    note: Broken on purpose.
"""
    path = _write(tmp_path, "mood.yaml", GOOD + bad)
    with pytest.raises(LexiconError) as info:
        load_lexicon(tmp_path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_forms_unknown_kind_and_invalid_yaml_are_named(tmp_path):
    _write(tmp_path, "mood.yaml", GOOD.replace("ja: [穏やかな]", "ja: []"))
    with pytest.raises(LexiconError, match=r"mood\.yaml: concept 'mood_calm': ja"):
        load_lexicon(tmp_path)
    _write(tmp_path, "mood.yaml", GOOD.replace("kind: mood", "kind: weather"))
    with pytest.raises(LexiconError, match=r"mood\.yaml: kind"):
        load_lexicon(tmp_path)
    _write(tmp_path, "mood.yaml", GOOD + "  - id: [unclosed\n")
    with pytest.raises(LexiconError, match=r"mood\.yaml:\d+: invalid YAML"):
        load_lexicon(tmp_path)
    with pytest.raises(LexiconError, match="lexicon directory not found"):
        load_lexicon(tmp_path / "nowhere")


def test_a_form_shared_by_concepts_with_opposite_effects_is_refused(tmp_path):
    _write(tmp_path, "mood.yaml", GOOD)
    _write(
        tmp_path,
        "texture.yaml",
        """kind: texture
concepts:
  - id: texture_calm
    en: [Calm]
    ja: [静かな]
    dims: {energy: 80}
    note: The same word, the other way.
""",
    )
    with pytest.raises(LexiconError) as info:
        load_lexicon(tmp_path)
    message = str(info.value)
    assert "'Calm' is also a form of 'mood_calm'" in message and "opposite effects on energy" in message


def test_a_duplicate_id_across_files_is_refused(tmp_path):
    _write(tmp_path, "mood.yaml", GOOD)
    _write(tmp_path, "texture.yaml", GOOD.replace("kind: mood", "kind: texture").replace("[calm]", "[still]"))
    with pytest.raises(LexiconError, match="id: also defined in"):
        load_lexicon(tmp_path)
