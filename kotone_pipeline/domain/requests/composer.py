"""Request composer (docs/design.md § Teacher): customer requests written from lexicon concepts, labelled by the rule.

A request is a use and/or a scene (optional), one to four descriptor concepts (moods, genres,
instruments, textures, catalog parts), an optional reference ("like something from the 80s"), and
modifiers (intensifiers, hedges, negations). It is rendered in one of many registers, in English or
Japanese, and its label is ``label_rule.label`` of what it mentions, plus noise. Deterministic for
the rng's state; the words never encode a label, they only name concepts people actually say.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.loop.quality import LEAK_PATTERN, request_text_problem
from kotone_pipeline.domain.requests.label_rule import (
    MULTIPLIER,
    Mention,
    Modifier,
    apply_noise,
    label_100,
    to_vector_values,
)
from kotone_pipeline.domain.requests.lexicon import ADJECTIVE_KINDS, Concept, Lexicon
from kotone_pipeline.domain.requests.phrasing import EN_REGISTERS, JA_REGISTERS, POSITIVE, Plan, pick, render

DEFAULT_JA_SHARE = 0.2
DESCRIPTOR_KINDS: tuple[tuple[str, float], ...] = (
    ("mood", 0.34),
    ("genre", 0.22),
    ("instrument", 0.2),
    ("texture", 0.18),
    ("part", 0.06),
)
N_DESCRIPTORS: tuple[tuple[int, float], ...] = ((1, 0.3), (2, 0.35), (3, 0.25), (4, 0.1))
ADJ_MODIFIERS: tuple[tuple[Modifier, float], ...] = (
    ("plain", 0.66),
    ("intensified", 0.14),
    ("hedged", 0.1),
    ("not_too", 0.06),
    ("negated", 0.04),
)
NOUN_MODIFIERS: tuple[tuple[Modifier, float], ...] = (
    ("plain", 0.8),
    ("intensified", 0.06),
    ("hedged", 0.08),
    ("negated", 0.06),
)
MAX_ATTEMPTS = 40


def _weighted(rng: random.Random, options: Sequence[tuple[object, float]]) -> object:
    pick = rng.random() * sum(w for _, w in options)
    for value, weight in options:
        pick -= weight
        if pick < 0:
            return value
    return options[-1][0]


def _five_best(dists: np.ndarray, modifiers: Sequence[str]) -> list[tuple[float, int, str]]:
    """The five smallest ``(distance, concept index, modifier)`` of a (modifiers x concepts) matrix, ordered
    as sorting every such tuple would order them (ties by index, then modifier name); inf is excluded.
    Only the few candidates at or under the fifth distance become tuples (a plan used to sort ~1,800)."""
    flat = dists.ravel()
    finite = int(np.isfinite(flat).sum())
    if finite == 0:
        return []
    kth = min(5, finite) - 1
    threshold = np.partition(flat, kth)[kth]
    rows, cols = np.nonzero(dists <= threshold)
    options = sorted((float(dists[r, c]), int(c), modifiers[r]) for r, c in zip(rows, cols, strict=True))
    return options[:5]


@dataclass(frozen=True)
class ComposedRequest:
    text: str
    plan: Plan
    values_100: tuple[float, ...]
    vector: tuple[int, ...]

    def meta(self) -> dict[str, object]:
        return {
            "lang": self.plan.lang,
            "register": self.plan.register,
            "mentions": [m.as_dict() for m in self.plan.mentions],
            "vector_100": list(self.values_100),
        }


class Composer:
    """Writes requests from a lexicon. ``compose`` draws a plan; ``compose_for`` aims at a vector."""

    def __init__(self, lexicon: Lexicon, ja_share: float = DEFAULT_JA_SHARE, noise_100: float = 6.0) -> None:
        if not 0.0 <= ja_share <= 1.0:
            raise ValueError(f"ja_share must be within 0..1, got {ja_share}")
        self.lexicon = lexicon
        self.ja_share = ja_share
        self.noise_100 = noise_100
        # Only forms that pass the quality filter's leak check ("16-bit" would read as a number).
        self._forms: dict[tuple[str, str], tuple[str, ...]] = {}
        for c in lexicon:
            for lang in ("en", "ja"):
                usable = tuple(f for f in c.forms(lang) if not LEAK_PATTERN.search(f))
                self._forms[(c.id, lang)] = usable
        self._pool: dict[tuple[str, str], tuple[Concept, ...]] = {
            (kind, lang): tuple(c for c in concepts if self._forms[(c.id, lang)])
            for kind, concepts in lexicon.by_kind.items()
            for lang in ("en", "ja")
        }
        self._matrix_cache: dict[str, tuple[list[Concept], np.ndarray, np.ndarray]] = {}

    # --- planning -----------------------------------------------------------------------------

    def _concept(self, rng: random.Random, kind: str, lang: str, taken: set[str], current: list[float]) -> Concept:
        pool = self._pool[(kind, lang)]
        candidates = [pool[int(rng.random() * len(pool))] for _ in range(6)]
        candidates = [c for c in candidates if c.id not in taken] or [c for c in pool if c.id not in taken]
        if rng.random() < 0.25 or not any(abs(v - 50) > 1 for v in current):
            return candidates[int(rng.random() * len(candidates))]

        # Real requests hang together: prefer the candidate that agrees with what is said so far.
        def agreement(c: Concept) -> float:
            return sum((c.dims[d] - 50) * (current[i] - 50) for i, d in enumerate(DIMS) if d in c.dims)

        return max(candidates, key=agreement)

    def plan(self, rng: random.Random, lang: str | None = None, register: str | None = None) -> Plan:
        lang = lang or ("ja" if rng.random() < self.ja_share else "en")
        register = register or pick(rng, JA_REGISTERS if lang == "ja" else EN_REGISTERS)
        mentions: list[Mention] = []
        taken: set[str] = set()

        def add(concept: Concept, role: str, modifier: Modifier = "plain") -> None:
            mentions.append(Mention(concept, role, modifier))  # type: ignore[arg-type]
            taken.add(concept.id)

        setting = rng.random()
        if setting < 0.5:
            add(self._concept(rng, "use", lang, taken, [50.0] * 6), "use")
        if 0.35 <= setting < 0.8:
            add(self._concept(rng, "scene", lang, taken, label_100(mentions)), "scene")
        wants_reference = register == "like_x_but_y" or rng.random() < 0.2
        if wants_reference:
            kind = "era" if register != "like_x_but_y" or rng.random() < 0.5 else "genre"
            add(self._concept(rng, kind, lang, taken, label_100(mentions)), "reference")
        n = int(_weighted(rng, N_DESCRIPTORS))  # type: ignore[arg-type]
        for index in range(n):
            kind = str(_weighted(rng, DESCRIPTOR_KINDS))
            concept = self._concept(rng, kind, lang, taken, label_100(mentions))
            table = ADJ_MODIFIERS if kind in ADJECTIVE_KINDS else NOUN_MODIFIERS
            modifier = _weighted(rng, table)
            if index == 0 and modifier not in POSITIVE:
                modifier = "plain"  # a request says what it wants before what it does not
            add(concept, "descriptor", modifier)  # type: ignore[arg-type]
        forms = {m.concept.id: pick(rng, self._forms[(m.concept.id, lang)]) for m in mentions}
        return Plan(lang=lang, register=register, mentions=tuple(mentions), forms=forms)

    # --- aiming at a vector (augmentation) -------------------------------------------------------

    def _matrix(self, lang: str) -> tuple[list[Concept], np.ndarray, np.ndarray]:
        cached = self._matrix_cache.get(lang)
        if cached is None:
            concepts = [c for kind, _ in DESCRIPTOR_KINDS for c in self._pool[(kind, lang)]]
            offsets = np.array([[c.dims.get(d, 50) - 50.0 for d in DIMS] for c in concepts])
            defined = np.array([[d in c.dims for d in DIMS] for c in concepts], dtype=np.float64)
            cached = self._matrix_cache[lang] = (concepts, offsets, defined)
        return cached

    def plan_for(self, target: Sequence[int], rng: random.Random, lang: str | None = None) -> Plan:
        """A plan whose rule label is close to ``target`` (0..10): greedy over descriptor concepts.

        Each step adds the concept (plain, intensified or hedged) that most reduces the L1 distance to
        the target, drawn among the five best so that equal targets get different requests."""
        lang = lang or ("ja" if rng.random() < self.ja_share else "en")
        register = pick(rng, JA_REGISTERS if lang == "ja" else EN_REGISTERS)
        goal = np.array([v * 10.0 for v in target])
        concepts, offsets, defined = self._matrix(lang)
        num, den = np.zeros(6), np.zeros(6)
        mentions: list[Mention] = []
        taken: set[int] = set()
        best = float(np.abs(np.full(6, 50.0) - goal).sum())
        modifiers = ("plain", "intensified", "hedged")
        for step in range(4):
            dists = np.empty((len(modifiers), len(concepts)))
            for row, modifier in enumerate(modifiers):
                values = 50.0 + MULTIPLIER[modifier] * offsets
                new_num, new_den = num + defined * values, den + defined
                with np.errstate(invalid="ignore", divide="ignore"):
                    label = np.where(new_den > 0, new_num / np.maximum(new_den, 1e-9), 50.0)
                dists[row] = np.abs(np.clip(label, 0, 100) - goal).sum(axis=1)
            dists[:, sorted(taken)] = np.inf
            options = _five_best(dists, modifiers)
            top = [o for o in options if o[0] < best - 1e-9]
            if not top:
                break
            dist, index, modifier = top[int(rng.random() * len(top))]
            values = 50.0 + MULTIPLIER[modifier] * offsets[index]
            num, den = num + defined[index] * values, den + defined[index]
            mentions.append(Mention(concepts[index], "descriptor", modifier))  # type: ignore[arg-type]
            taken.add(index)
            best = dist
            if step >= 1 and best < 25:
                break
        if not mentions:
            concept = concepts[int(rng.random() * len(concepts))]
            mentions.append(Mention(concept, "descriptor", "hedged"))
        forms = {m.concept.id: pick(rng, self._forms[(m.concept.id, lang)]) for m in mentions}
        return Plan(lang=lang, register=register, mentions=tuple(mentions), forms=forms)

    # --- composing ----------------------------------------------------------------------------

    def finish(self, plan: Plan, rng: random.Random) -> ComposedRequest:
        text = render(plan, rng)
        values = label_100(plan.mentions)
        if self.noise_100 > 0:
            values = apply_noise(values, rng, self.noise_100)
        return ComposedRequest(text=text, plan=plan, values_100=tuple(values), vector=to_vector_values(values))

    def compose(
        self,
        rng: random.Random,
        *,
        accept: Callable[[Plan], bool] | None = None,
        lang: str | None = None,
        register: str | None = None,
    ) -> ComposedRequest:
        """A request that passes the quality filter (and ``accept``, e.g. an eval pool's check)."""
        for _ in range(MAX_ATTEMPTS * 8):
            plan = self.plan(rng, lang=lang, register=register)
            if accept is not None and not accept(plan):
                continue
            composed = self.finish(plan, rng)
            if request_text_problem(composed.text) is None:
                return composed
        raise RuntimeError("could not compose an acceptable request; the lexicon or the accept rule is too narrow")

    def compose_for(self, target: Sequence[int], rng: random.Random) -> ComposedRequest | None:
        for _ in range(MAX_ATTEMPTS):
            composed = self.finish(self.plan_for(target, rng), rng)
            if request_text_problem(composed.text) is None:
                return composed
        return None
