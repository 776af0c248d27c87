"""Request composer (DESIGN §4): customer requests written from lexicon concepts, labelled by the rule.

A request is a use and/or a scene (optional), one to four descriptor concepts (moods, genres,
instruments, textures, catalog parts), an optional reference ("like something from the 80s"), and
modifiers (intensifiers, hedges, negations). It is rendered in one of many registers, in English or
Japanese, and its label is ``label_rule.label`` of what it mentions, plus noise. Deterministic for
the rng's state; the words never encode a label, they only name concepts people actually say.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.domain.label_rule import (
    MULTIPLIER,
    Mention,
    Modifier,
    apply_noise,
    label_100,
    to_vector_values,
)
from kotone_pipeline.domain.lexicon import ADJECTIVE_KINDS, Concept, Lexicon
from kotone_pipeline.domain.lexicon_reader import strip_article
from kotone_pipeline.domain.quality import LEAK_PATTERN, request_text_problem

EN_REGISTERS: tuple[str, ...] = (
    "one_liner",
    "chatty",
    "formal_brief",
    "spec_fields",
    "bullets",
    "lowercase",
    "typos",
    "irrelevant_details",
    "like_x_but_y",
    "question",
    "keywords",
    "hedgy",
)
JA_REGISTERS: tuple[str, ...] = ("ja_casual", "ja_polite", "ja_spec", "ja_question", "ja_one_liner", "ja_bullets")
REGISTERS: tuple[str, ...] = EN_REGISTERS + JA_REGISTERS
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
POSITIVE: frozenset[str] = frozenset({"plain", "intensified", "hedged"})
MAX_ATTEMPTS = 40


def _weighted(rng: random.Random, options: Sequence[tuple[object, float]]) -> object:
    pick = rng.random() * sum(w for _, w in options)
    for value, weight in options:
        pick -= weight
        if pick < 0:
            return value
    return options[-1][0]


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[int(rng.random() * len(options))]


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
class Plan:
    """What a request says, before it is rendered."""

    lang: str
    register: str
    mentions: tuple[Mention, ...]
    forms: dict[str, str] = field(default_factory=dict)  # concept id -> the surface form used

    def by_role(self, *roles: str) -> list[Mention]:
        return [m for m in self.mentions if m.role in roles]


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
        register = register or _pick(rng, JA_REGISTERS if lang == "ja" else EN_REGISTERS)
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
        forms = {m.concept.id: _pick(rng, self._forms[(m.concept.id, lang)]) for m in mentions}
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
        register = _pick(rng, JA_REGISTERS if lang == "ja" else EN_REGISTERS)
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
        forms = {m.concept.id: _pick(rng, self._forms[(m.concept.id, lang)]) for m in mentions}
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


# --- rendering ---------------------------------------------------------------------------------

_NOUNS = ("track", "tune", "piece", "song", "loop", "theme", "cue", "BGM", "piece of music", "background track")
_EN_INTENS = ("very {f}", "super {f}", "really {f}", "extremely {f}", "properly {f}", "seriously {f}")
_EN_HEDGE = ("slightly {f}", "somewhat {f}", "kind of {f}", "mildly {f}", "sort of {f}")
_EN_NOT_TOO = ("not too {f}", "not overly {f}", "not excessively {f}")
_EN_NEG_ADJ = ("not {f}", "nothing {f}", "less {f} than usual")
_EN_NEG_NOUN = ("no {f}", "without {f}", "nothing like {f}", "less {f} than usual")
_EN_INST = {
    "plain": ("with {f}", "featuring {f}", "built around {f}", "using {f}"),
    "intensified": ("with lots of {f}", "loaded with {f}", "drenched in {f}"),
    "hedged": ("with a touch of {f}", "with a little {f}", "with just a hint of {f}"),
}
_EN_GENRE_HEDGE = ("with a hint of {f}", "slightly {f}-ish", "with a little {f} flavour")
_EN_GENRE_INTENS = ("full-on {f}", "hardcore {f}", "all-out {f}")
_EN_REF = ("like something from {f}", "evoking {f}", "with a feel of {f}", "in the spirit of {f}")
_EN_SCENE = ("for {f}", "set in {f}", "that feels like {f}", "for a scene in {f}")
_EN_USE = ("for {f}",)
_IRRELEVANT = (
    "Deadline is next Friday.",
    "Budget is modest, sorry!",
    "Please deliver as a WAV file.",
    "We'll need an OGG version too.",
    "My producer says hi.",
    "It has to be done before the weekend.",
    "Credit in the end roll is fine.",
    "Invoice to the studio address, please.",
    "We might need a shorter edit later.",
    "I found you through a friend's recommendation.",
)
_OPENERS = ("hey!", "hi there,", "hello!", "yo,", "hiya,", "ok so")
_PROJECTS = ("my indie game", "a little app", "our channel", "a small project", "my shop", "a client project")


def _adj_en(m: Mention, f: str, rng: random.Random) -> str:
    if m.modifier == "intensified":
        return _pick(rng, _EN_INTENS).format(f=f)
    if m.modifier == "hedged":
        return _pick(rng, _EN_HEDGE).format(f=f)
    return f


def _neg_en(m: Mention, f: str, rng: random.Random) -> str:
    if m.modifier == "not_too":
        return _pick(rng, _EN_NOT_TOO).format(f=f)
    if m.concept.kind in ADJECTIVE_KINDS:
        return _pick(rng, _EN_NEG_ADJ).format(f=f)
    return _pick(rng, _EN_NEG_NOUN).format(f=strip_article(f))


def _and(items: Sequence[str], word: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


@dataclass
class _Parts:
    """A plan's mentions as rendered phrases, grouped by the slot they take in a sentence."""

    adjs: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)  # noun adjuncts: "city pop"
    genre_tails: list[str] = field(default_factory=list)  # "with a hint of jazz"
    insts: list[str] = field(default_factory=list)  # "with a music box"
    negs: list[str] = field(default_factory=list)
    setting: list[str] = field(default_factory=list)  # "for a bedtime story app"
    setting_bare: list[str] = field(default_factory=list)  # "a bedtime story app"
    refs: list[str] = field(default_factory=list)  # "like something from the 80s"
    ref_bare: list[str] = field(default_factory=list)  # "the 80s"
    adj_bare: list[str] = field(default_factory=list)
    inst_bare: list[str] = field(default_factory=list)


def _parts_en(plan: Plan, rng: random.Random) -> _Parts:
    p = _Parts()
    for m in plan.mentions:
        f = plan.forms[m.concept.id]
        if m.role in ("use", "scene"):
            p.setting.append(_pick(rng, _EN_USE if m.role == "use" else _EN_SCENE).format(f=f))
            p.setting_bare.append(f)
        elif m.role == "reference":
            p.refs.append(_pick(rng, _EN_REF).format(f=f))
            p.ref_bare.append(f)
        elif m.modifier not in POSITIVE:
            p.negs.append(_neg_en(m, f, rng))
        elif m.concept.kind in ADJECTIVE_KINDS:
            p.adjs.append(_adj_en(m, f, rng))
            p.adj_bare.append(f)
        elif m.concept.kind == "instrument":
            # "with a koto", but "with lots of koto"
            p.insts.append(_pick(rng, _EN_INST[m.modifier]).format(f=f if m.modifier == "plain" else strip_article(f)))
            p.inst_bare.append(f)
        elif m.modifier == "hedged":
            p.genre_tails.append(_pick(rng, _EN_GENRE_HEDGE).format(f=f))
            p.adj_bare.append(f)
        else:
            p.genres.append(_pick(rng, _EN_GENRE_INTENS).format(f=f) if m.modifier == "intensified" else f)
            p.adj_bare.append(f)
    return p


def _core_en(p: _Parts, rng: random.Random) -> str:
    """'a calm, sparse city pop track with a hint of jazz' — the request's main noun phrase."""
    noun = _pick(rng, _NOUNS)
    head = " ".join([", ".join(p.adjs), " ".join(p.genres[:1]), noun]).split()
    phrase = " ".join(head)
    extra = p.genres[1:]
    tail = [*(f"with some {g}" for g in extra), *p.genre_tails]
    phrase = f"{_article(phrase)} {phrase}"
    return " ".join([phrase, *tail])


def _tail_en(p: _Parts, rng: random.Random, with_setting: bool = True) -> str:
    bits = []
    if with_setting and p.setting:
        bits.append(" ".join(p.setting))
    if p.insts:
        bits.append(_and(p.insts))
    if p.refs:
        bits.append(p.refs[0])
    text = " ".join(bits)
    if p.negs:
        text += ("," if text else "") + " but " + _and(p.negs, "or")
    return text


def _sentence(text: str) -> str:
    text = re.sub(r"\s+([?.!,])", r"\1", " ".join(text.split()))
    return text[:1].upper() + text[1:]


def _typos(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    for _ in range(min(2, len(candidates))):
        i = candidates[int(rng.random() * len(candidates))]
        w = words[i]
        j = 1 + int(rng.random() * (len(w) - 2))
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.6 else w[:j] + w[j + 1 :]
    return " ".join(words)


def _render_en(plan: Plan, rng: random.Random) -> str:
    p = _parts_en(plan, rng)
    core, tail = _core_en(p, rng), _tail_en(p, rng)
    r = plan.register
    if r in ("one_liner", "lowercase", "typos", "irrelevant_details"):
        lead = _pick(rng, ("", "I need ", "Looking for ", "Please make ", "Need ", "Could use "))
        text = _sentence(f"{lead}{core} {tail}") + "."
        if r == "lowercase":
            text = re.sub(r"[.,!?;:]", "", text.lower())
        elif r == "typos":
            text = _typos(text, rng)
        elif r == "irrelevant_details":
            text += " " + _pick(rng, _IRRELEVANT)
        return text
    if r == "chatty":
        opener, project = _pick(rng, _OPENERS), _pick(rng, _PROJECTS)
        body = f"{opener} I'm working on {project} and I'd love {core} {tail}."
        return _sentence(body) + _pick(rng, ("", " thanks!!", " thank you :)", " lmk if that makes sense"))
    if r == "formal_brief":
        text = f"We would like to commission {core}"
        if p.setting:
            text += " " + " ".join(p.setting)
        text += "."
        if p.insts:
            text += f" It should feature {_and([i.split(' ', 1)[1] if i.startswith('with ') else i for i in p.insts])}."
        if p.refs:
            text += f" The reference is {p.ref_bare[0]}."
        if p.negs:
            text += f" Please keep it {_and(p.negs, 'and')}."
        return _pick(rng, ("Dear composer, ", "Hello, ", "")) + text + _pick(rng, (" Kind regards.", " Thank you.", ""))
    if r == "spec_fields":
        lines = []
        if p.setting_bare:
            lines.append(f"Scene: {' / '.join(p.setting_bare)}")
        mood = _and([*p.adjs, *p.genres, *p.genre_tails])
        if mood:
            lines.append(f"Mood: {mood}")
        if p.inst_bare:
            lines.append(f"Instruments: {', '.join(p.inst_bare)}")
        if p.ref_bare:
            lines.append(f"Refs: {p.ref_bare[0]}")
        if p.negs:
            lines.append(f"Avoid: {'; '.join(p.negs)}")
        return "\n".join(lines) if len(lines) > 1 else _sentence(f"{core} {tail}") + "."
    if r == "bullets":
        items = [*p.setting, *p.adjs, *p.genres, *p.genre_tails, *p.insts, *p.refs, *p.negs]
        return "\n".join(f"- {i}" for i in items) if len(items) > 1 else _sentence(f"{core} {tail}") + "."
    if r == "keywords":
        items = [*p.setting_bare, *p.adjs, *p.genres, *p.genre_tails, *p.inst_bare, *p.ref_bare, *p.negs]
        return ", ".join(items) if len(", ".join(items)) >= 16 else _sentence(f"{core} {tail}") + "."
    if r == "like_x_but_y":
        ref = p.ref_bare[0] if p.ref_bare else "what you did last time"
        wish = _and([*p.adjs, *p.genres, *p.genre_tails, *p.insts, *p.negs]) or "a little different"
        lead = " ".join(p.setting)
        return _sentence(f"{lead + ': ' if lead else ''}like {ref}, but {wish}.")
    if r == "question":
        lead = _pick(
            rng, ("Could you make ", "Can you write ", "Would you be able to do ", "Do you take requests for ")
        )
        return _sentence(f"{lead}{core} {tail}?")
    # hedgy
    lead = _pick(rng, ("I'm thinking maybe ", "Not sure, but perhaps ", "Something along the lines of ", "Ideally "))
    return _sentence(f"{lead}{core} {tail}") + _pick(rng, ("?", "... if that makes sense.", ". Open to ideas!"))


_JA_INTENS = ("とても{f}", "すごく{f}", "めちゃくちゃ{f}", "かなり{f}")
_JA_HEDGE = ("少し{f}", "ちょっと{f}", "ほんのり{f}", "やや{f}")
_JA_NOT_TOO = ("{f}感じになりすぎない", "{f}感じが強すぎない")
_JA_NEG_ADJ = ("{f}感じではない",)
_JA_NEG_NOUN = ("{f}なしの", "{f}は使わない", "{f}っぽさのない")
_JA_INST = {
    "plain": ("{f}を使った", "{f}入りの", "{f}が入った"),
    "intensified": ("{f}をたっぷり使った", "{f}メインの"),
    "hedged": ("{f}を少しだけ入れた", "{f}をほんの少し入れた"),
}
_JA_GENRE = {
    "plain": ("{f}の", "{f}風の", "{f}っぽい"),
    "intensified": ("本格的な{f}の", "ゴリゴリの{f}の"),
    "hedged": ("ほんのり{f}風の", "少し{f}っぽい"),
}
_JA_SETTING = {
    "use": ("{f}用の", "{f}で使う", "{f}向けの"),
    "scene": ("{f}のシーンの", "{f}をイメージした", "{f}っぽい"),
}
_JA_REF = ("{f}っぽい", "{f}風の", "{f}を思わせる")
_JA_NOUN = ("曲", "BGM", "音楽", "ループ曲", "テーマ曲")


def _render_ja(plan: Plan, rng: random.Random) -> str:
    pre: list[str] = []  # attributive phrases before the noun
    adjs: list[str] = []
    negs: list[str] = []
    fields: dict[str, list[str]] = {"シーン": [], "雰囲気": [], "ジャンル": [], "楽器": [], "参考": [], "NG": []}
    for m in plan.mentions:
        f = plan.forms[m.concept.id]
        kind = m.concept.kind
        if m.role in ("use", "scene"):
            pre.append(_pick(rng, _JA_SETTING[m.role]).format(f=f))
            fields["シーン"].append(f)
        elif m.role == "reference":
            pre.append(_pick(rng, _JA_REF).format(f=f))
            fields["参考"].append(f)
        elif m.modifier not in POSITIVE:
            if m.modifier == "not_too":
                phrase = _pick(rng, _JA_NOT_TOO).format(f=f)
            else:
                phrase = _pick(rng, _JA_NEG_ADJ if kind in ADJECTIVE_KINDS else _JA_NEG_NOUN).format(f=f)
            negs.append(phrase)
            fields["NG"].append(phrase)
        elif kind in ADJECTIVE_KINDS:
            table = {"plain": ("{f}",), "intensified": _JA_INTENS, "hedged": _JA_HEDGE}[m.modifier]
            adjs.append(_pick(rng, table).format(f=f))
            fields["雰囲気"].append(adjs[-1])
        elif kind == "instrument":
            pre.append(_pick(rng, _JA_INST[m.modifier]).format(f=f))
            fields["楽器"].append(f)
        else:
            pre.append(_pick(rng, _JA_GENRE[m.modifier]).format(f=f))
            fields["ジャンル"].append(f)
    noun = _pick(rng, _JA_NOUN)
    mood = ("感じで、".join(adjs) + ("感じの" if rng.random() < 0.5 else "")) if adjs else ""
    core = "".join(pre) + mood + noun
    neg = ("、".join(negs) + "感じでお願いします。") if negs else ""
    r = plan.register
    if r == "ja_casual":
        return f"{core}をお願いします！{neg}" + _pick(rng, ("", "よろしくです〜", "急ぎじゃないです。"))
    if r == "ja_polite":
        return f"お世話になっております。{core}の制作をお願いしたくご連絡いたしました。{neg}よろしくお願いいたします。"
    if r == "ja_spec":
        lines = [f"{k}：{'、'.join(v)}" for k, v in fields.items() if v]
        return "\n".join(lines) if len(lines) > 1 else f"{core}をお願いします。{neg}"
    if r == "ja_question":
        return f"{core}って作ってもらえますか？{neg}"
    if r == "ja_bullets":
        items = [*pre, *(a + "感じ" for a in adjs), *negs]
        return "\n".join(f"・{i}" for i in items) if len(items) > 1 else f"{core}をお願いします。{neg}"
    return f"{core}で。{neg}"


def render(plan: Plan, rng: random.Random) -> str:
    text = _render_ja(plan, rng) if plan.lang == "ja" else _render_en(plan, rng)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip()
