from __future__ import annotations

import random
import re

from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.lexicon_reader import LexiconReader, trie_alternation


def _flat(forms: set[str]) -> str:
    return "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))


def test_the_prefix_tree_prefers_the_longest_form_like_the_flat_alternation():
    forms = {"lo", "lo-fi", "lo-fi beat", "warm", "warmth", "r&b", "80s", "8"}
    text = "a warmth of lo-fi beats, lo-fi, lo and r&b from the 80s or 8"
    tree = re.compile(rf"(?<![\w-])({trie_alternation(forms)})(?:s|es)?(?![\w])", re.IGNORECASE)
    flat = re.compile(rf"(?<![\w-])({_flat(forms)})(?:s|es)?(?![\w])", re.IGNORECASE)
    found = [m.group(1) for m in tree.finditer(text)]
    assert found == [m.group(1) for m in flat.finditer(text)]
    assert found == ["warmth", "lo-fi beat", "lo-fi", "lo", "r&b", "80s", "8"]


def test_the_prefix_tree_matches_what_the_flat_alternation_matches_on_random_text():
    rng = random.Random(7)
    alphabet = "ab -"
    for _ in range(200):
        forms = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))).strip() or "a" for _ in range(8)}
        text = "".join(rng.choice(alphabet + "s") for _ in range(60))
        tree = re.compile(rf"(?<![\w-])({trie_alternation(forms)})(?:s|es)?(?![\w])", re.IGNORECASE)
        flat = re.compile(rf"(?<![\w-])({_flat(forms)})(?:s|es)?(?![\w])", re.IGNORECASE)
        assert [m.span(1) for m in tree.finditer(text)] == [m.span(1) for m in flat.finditer(text)], (forms, text)


def test_the_reader_finds_english_and_japanese_forms_with_their_modifiers():
    reader = LexiconReader(default_lexicon())
    concept = next(c for c in reader.lexicon if c.en and c.ja)
    english, japanese = concept.en[0], concept.ja[0]
    assert [f.concept.id for f in reader.find(f"Something with {english}, please")] == [concept.id]
    assert [(f.concept.id, f.modifier) for f in reader.find(f"no {english}")] == [(concept.id, "negated")]
    assert [f.concept.id for f in reader.find(f"{japanese}でお願いします")] == [concept.id]
