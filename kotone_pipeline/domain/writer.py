"""Texts the teacher writes: the customer request (written from the vector) and the rule prompt.

The request text is what makes the task learnable (DESIGN §4): every value of every dim has its own
phrases, so a reader (the rule baseline, or a bag-of-words model) can recover a mentioned dim exactly.
No content word is shared between two (dim, value) entries, and none appears in the templates,
scenes or uses; the tests hold the vocabulary to that.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from numbers import Integral
from typing import TYPE_CHECKING

from kotone_pipeline.domain.dims import DIMS, NEUTRAL_VALUE, SLOTS

if TYPE_CHECKING:
    from kotone_pipeline.domain.catalog import Part

# Graded vocabularies: 0..2 very low, 3..4 low, 5 balanced, 6..7 high, 8..10 very high.
LEXICON: dict[str, dict[int, tuple[str, ...]]] = {
    "energy": {
        0: ("motionless", "stock-still", "unmoving"),
        1: ("near-silent", "barely-there", "whisper-quiet"),
        2: ("hushed", "drowsy", "sleepy"),
        3: ("gentle", "unhurried", "mellow"),
        4: ("relaxed", "easygoing", "laid-back"),
        5: ("mid-tempo", "steady-going"),
        6: ("lively", "bouncy", "perky"),
        7: ("upbeat", "peppy", "spirited"),
        8: ("energetic", "punchy", "vigorous"),
        9: ("pounding", "racing", "adrenaline-fuelled"),
        10: ("explosive", "frenzied", "breakneck"),
    },
    "warmth": {
        0: ("icy", "clinical", "frostbitten"),
        1: ("chilly", "robotic", "sterile"),
        2: ("cold", "mechanical", "metallic"),
        3: ("cool", "detached", "aloof"),
        4: ("reserved", "restrained", "understated"),
        5: ("even-tempered", "temperate"),
        6: ("friendly", "kindly", "tender"),
        7: ("warm", "heartfelt", "affectionate"),
        8: ("cosy", "snug", "homely"),
        9: ("glowing", "heartwarming", "loving"),
        10: ("fireside", "embracing", "toasty"),
    },
    "brightness": {
        0: ("pitch-black", "lightless", "jet-black"),
        1: ("murky", "shadowy", "gloomy"),
        2: ("dark", "dusky", "somber"),
        3: ("dim", "muted", "smoky"),
        4: ("hazy", "overcast", "subdued"),
        5: ("softly shaded", "moderately lit"),
        6: ("clear", "airy", "fresh"),
        7: ("bright", "luminous", "shiny"),
        8: ("sparkling", "radiant", "gleaming"),
        9: ("glittering", "dazzling", "shimmering"),
        10: ("blazing", "blinding", "brilliant"),
    },
    "acousticness": {
        0: ("fully digital", "synthetic", "computer-generated"),
        1: ("electronic", "synth-driven", "programmed"),
        2: ("synthy", "electro", "sequenced"),
        3: ("processed", "drum-machine", "sampled"),
        4: ("hybrid", "blended", "crossover"),
        5: ("half-electric", "evenly mixed"),
        6: ("organic", "natural-sounding", "woody"),
        7: ("acoustic", "unplugged", "fingerpicked"),
        8: ("live-instrument", "handcrafted", "hand-played"),
        9: ("earthy", "rustic", "wooden"),
        10: ("unamplified", "mic-free", "purist"),
    },
    "complexity": {
        0: ("bare-bones", "skeletal", "single-note"),
        1: ("sparse", "minimal", "stripped-down"),
        2: ("simple", "plain", "uncluttered"),
        3: ("uncomplicated", "tidy", "unfussy"),
        4: ("modest", "straightforward", "neat"),
        5: ("medium-density", "middle-weight"),
        6: ("textured", "detailed", "fleshed-out"),
        7: ("layered", "rich", "full-bodied"),
        8: ("intricate", "elaborate", "ornate"),
        9: ("densely woven", "kaleidoscopic", "polyphonic"),
        10: ("maximalist", "overflowing", "wall-of-sound"),
    },
    "nostalgia": {
        0: ("far-future", "space-age", "post-human"),
        1: ("futuristic", "sci-fi", "tomorrow-bound"),
        2: ("modern", "cutting-edge", "sleek"),
        3: ("contemporary", "current", "trendy"),
        4: ("present-day", "newish"),
        5: ("timeless", "era-neutral"),
        6: ("classic", "familiar"),
        7: ("nostalgic", "retro", "throwback"),
        8: ("vintage", "wistful", "bygone"),
        9: ("sepia-toned", "yesteryear", "memory-soaked"),
        10: ("antique", "old-world", "long-lost"),
    },
}

REVERSE_LEXICON: dict[str, tuple[str, int]] = {
    phrase: (dim, value)
    for dim, by_value in LEXICON.items()
    for value, phrases in by_value.items()
    for phrase in phrases
}

# Scenes, uses and templates carry no label; few and short, so that the graded phrases dominate what
# a bag-of-words model sees (measured: 34 scenes / 10 templates cost ~0.03 request MAE at 600 groups).
SCENES: tuple[str, ...] = (
    "a lantern alley",
    "a harbor market",
    "a mountain village",
    "a rooftop garden",
    "a train platform",
    "a bookshop corner",
    "a pottery workshop",
    "a ferry crossing",
    "a chess club",
    "a museum hall",
    "a flower stall",
    "a skate park",
    "a science fair",
    "a desert caravan",
    "a snowy cabin",
    "a rainy pier",
    "a puzzle game",
    "a forest trail",
    "a cooking show",
    "a starship deck",
)

USES: tuple[str, ...] = (
    "tune",
    "loop",
    "cue",
    "background track",
    "theme",
    "intro",
    "menu track",
    "short sting",
)

# {a} = article + descriptors + use, {d} = bare descriptors, {u} = article + use, {s} = scene.
TEMPLATES: tuple[str, ...] = (
    "Could you make {a} for {s}?",
    "I need {a} for {s}.",
    "Please compose {a} for {s}.",
    "For {s}, we'd love {a}.",
    "Can you write {a}? It's for {s}.",
    "Something {d} for {s}, as {u}.",
    "{S} needs {a}.",
    "Commission: {a} for {s}.",
)

MIN_MENTIONS = 2
MAX_MENTIONS = 4

RULE_PROMPT_HEADER = "Compose a track from these catalog parts:"
_RULE_LINE = re.compile(r"^\s*(" + "|".join(SLOTS) + r")\s*:\s*(.+?)\s*\(([a-z0-9_]+)\)\s*$")

# Longest phrases first so that a phrase is never read as a shorter one it contains.
_PHRASE_RE = re.compile(
    r"(?<![\w-])(" + "|".join(re.escape(p) for p in sorted(REVERSE_LEXICON, key=len, reverse=True)) + r")(?![\w-])",
    re.IGNORECASE,
)

_DIM_COUNT = len(DIMS)
# The first synonym of a value is its main phrase and is drawn most often: every phrase must be seen
# often enough in ~500 training texts to be learnt, so variety is spent sparingly (measured with the
# local TF-IDF + Ridge model at 480 train groups, request MAE: one phrase per value 0.18, 80/10/10
# draws 0.26, uniform draws 0.32).
_SYNONYM_WEIGHTS: dict[int, tuple[int, ...]] = {1: (1,), 2: (8, 2), 3: (8, 1, 1)}


def _weighted(phrases: tuple[str, ...]) -> tuple[str, ...]:
    weights = _SYNONYM_WEIGHTS.get(len(phrases), (1,) * len(phrases))
    return tuple(p for p, w in zip(phrases, weights, strict=True) for _ in range(w))


_PHRASES_BY_INDEX: tuple[tuple[tuple[str, ...], ...], ...] = tuple(
    tuple(_weighted(LEXICON[dim][value]) for value in range(11)) for dim in DIMS
)


def mentioned_dim_indices(values: Sequence[int]) -> tuple[int, ...]:
    """Indices of the dims a request mentions, most salient (largest |v - 5|) first.

    Every dim away from the middle is mentioned, at least 2 and at most 4 (DESIGN §4), so an
    unmentioned dim sits at 5 whenever at most four are off-centre; ties keep DIMS order.
    """
    return _plan(tuple(values))[0]


def mentioned_dims(values: Sequence[int]) -> tuple[str, ...]:
    return tuple(DIMS[i] for i in mentioned_dim_indices(values))


@lru_cache(maxsize=1 << 16)
def _plan(values: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[tuple[str, ...], ...]]:
    """(mentioned dim indices, their phrase options); cached because teacher vectors repeat a lot."""
    if len(values) != _DIM_COUNT:
        raise ValueError(f"expected {_DIM_COUNT} values, got {len(values)}")
    for dim, value in zip(DIMS, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, Integral) or not 0 <= value <= 10:
            raise ValueError(f"{dim}: expected an integer 0..10, got {value!r}")
    order = sorted(range(_DIM_COUNT), key=lambda i: -abs(values[i] - NEUTRAL_VALUE))
    salient = sum(1 for v in values if v != NEUTRAL_VALUE)
    k = min(max(salient, MIN_MENTIONS), MAX_MENTIONS)
    indices = tuple(order[:k])
    return indices, tuple(_PHRASES_BY_INDEX[i][int(values[i])] for i in indices)


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiouAEIOU" else "a"


def write_request_text(values: Sequence[int], rng: random.Random) -> str:
    """A customer request written from a 0..10 vector (DIMS order); no digits, no dim names.

    Draws come from ``rng.random`` only (indexing instead of ``choice``: this runs a million times
    per big teacher run), so the text is deterministic for the rng's state.
    """
    _, options = _plan(tuple(values))
    unit = rng.random
    # Most salient first: a fixed order keeps word bigrams across phrases few (measured ~0.015 MAE).
    descriptors = _join([opts[int(unit() * len(opts))] for opts in options])
    use = USES[int(unit() * len(USES))]
    scene = SCENES[int(unit() * len(SCENES))]
    template = TEMPLATES[int(unit() * len(TEMPLATES))]
    return template.format(
        a=f"{_article(descriptors)} {descriptors} {use}",
        d=descriptors,
        u=f"{_article(use)} {use}",
        s=scene,
        S=scene[0].upper() + scene[1:],
    )


def read_request_phrases(text: str) -> dict[str, int]:
    """The (dim -> value) a request states through the writer's phrases; first mention wins."""
    found: dict[str, int] = {}
    for match in _PHRASE_RE.finditer(text):
        dim, value = REVERSE_LEXICON[match.group(1).lower()]
        found.setdefault(dim, value)
    return found


def write_rule_prompt(parts: Mapping[str, Part]) -> str:
    """One line per slot in SLOTS order, ``slot: Name (part_id)``, after a short instruction line."""
    missing = [s for s in SLOTS if s not in parts]
    if missing:
        raise ValueError(f"rule prompt needs a part for every slot; missing {', '.join(missing)}")
    lines = [RULE_PROMPT_HEADER]
    lines.extend(f"{slot}: {parts[slot].name} ({parts[slot].part_id})" for slot in SLOTS)
    return "\n".join(lines)


def parse_rule_prompt(text: str) -> dict[str, str] | None:
    """slot -> part_id when the text names exactly one part for each slot, else None."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _RULE_LINE.match(line)
        if match is None:
            continue
        slot, part_id = match.group(1), match.group(3)
        if slot in found:
            return None
        found[slot] = part_id
    return found if len(found) == len(SLOTS) else None
