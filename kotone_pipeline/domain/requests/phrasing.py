"""Phrasing: a request's plan (what it says) rendered as text, in one of many registers, in English or Japanese.

``composer.py`` decides what a request mentions and its label; this module only says it, with the
modifiers, typos and filler real requests have. Deterministic for the rng's state.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from kotone_pipeline.domain.requests.label_rule import Mention
from kotone_pipeline.domain.requests.lexicon import ADJECTIVE_KINDS
from kotone_pipeline.domain.requests.lexicon_reader import strip_article

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

# The modifiers that say a concept is wanted (the others, negations and "not too", say it is not).
POSITIVE: frozenset[str] = frozenset({"plain", "intensified", "hedged"})


def pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[int(rng.random() * len(options))]


@dataclass(frozen=True)
class Plan:
    """What a request says, before it is rendered."""

    lang: str
    register: str
    mentions: tuple[Mention, ...]
    forms: dict[str, str] = field(default_factory=dict)  # concept id -> the surface form used

    def by_role(self, *roles: str) -> list[Mention]:
        return [m for m in self.mentions if m.role in roles]


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


def _modified(rng: random.Random, templates: Sequence[str], m: Mention, f: str) -> str:
    """``f`` in one of the modifier's ``templates``, but never one that starts with another form of the same
    concept: "hardcore" + "punk" is the plain form "hardcore punk", and "very" + "slow-moving" starts with the
    plain form "very slow"; a reader (people's too) takes those as plain, so the label would be wrong."""
    own = strip_article(f).casefold()
    others = [form for form in (strip_article(x).casefold() for x in m.concept.en) if form != own]
    usable = [t for t in templates if not strip_article(t.format(f=f)).casefold().startswith(tuple(others))]
    return pick(rng, usable or list(templates)).format(f=f)


def _adj_en(m: Mention, f: str, rng: random.Random) -> str:
    if m.modifier == "intensified":
        return _modified(rng, _EN_INTENS, m, f)
    if m.modifier == "hedged":
        return _modified(rng, _EN_HEDGE, m, f)
    return f


def _neg_en(m: Mention, f: str, rng: random.Random) -> str:
    if m.modifier == "not_too":
        return pick(rng, _EN_NOT_TOO).format(f=f)
    if m.concept.kind in ADJECTIVE_KINDS:
        return pick(rng, _EN_NEG_ADJ).format(f=f)
    return pick(rng, _EN_NEG_NOUN).format(f=strip_article(f))


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
            p.setting.append(pick(rng, _EN_USE if m.role == "use" else _EN_SCENE).format(f=f))
            p.setting_bare.append(f)
        elif m.role == "reference":
            p.refs.append(pick(rng, _EN_REF).format(f=f))
            p.ref_bare.append(f)
        elif m.modifier not in POSITIVE:
            p.negs.append(_neg_en(m, f, rng))
        elif m.concept.kind in ADJECTIVE_KINDS:
            p.adjs.append(_adj_en(m, f, rng))
            p.adj_bare.append(f)
        elif m.concept.kind == "instrument":
            # "with a koto", but "with lots of koto"
            p.insts.append(pick(rng, _EN_INST[m.modifier]).format(f=f if m.modifier == "plain" else strip_article(f)))
            p.inst_bare.append(f)
        elif m.modifier == "hedged":
            p.genre_tails.append(pick(rng, _EN_GENRE_HEDGE).format(f=f))
            p.adj_bare.append(f)
        else:
            p.genres.append(_modified(rng, _EN_GENRE_INTENS, m, f) if m.modifier == "intensified" else f)
            p.adj_bare.append(f)
    return p


def _core_en(p: _Parts, rng: random.Random) -> str:
    """'a calm, sparse city pop track with a hint of jazz' — the request's main noun phrase."""
    noun = pick(rng, _NOUNS)
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
        lead = pick(rng, ("", "I need ", "Looking for ", "Please make ", "Need ", "Could use "))
        text = _sentence(f"{lead}{core} {tail}") + "."
        if r == "lowercase":
            text = re.sub(r"[.,!?;:]", "", text.lower())
        elif r == "typos":
            text = _typos(text, rng)
        elif r == "irrelevant_details":
            text += " " + pick(rng, _IRRELEVANT)
        return text
    if r == "chatty":
        opener, project = pick(rng, _OPENERS), pick(rng, _PROJECTS)
        body = f"{opener} I'm working on {project} and I'd love {core} {tail}."
        return _sentence(body) + pick(rng, ("", " thanks!!", " thank you :)", " lmk if that makes sense"))
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
        return pick(rng, ("Dear composer, ", "Hello, ", "")) + text + pick(rng, (" Kind regards.", " Thank you.", ""))
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
        lead = pick(rng, ("Could you make ", "Can you write ", "Would you be able to do ", "Do you take requests for "))
        return _sentence(f"{lead}{core} {tail}?")
    # hedgy
    lead = pick(rng, ("I'm thinking maybe ", "Not sure, but perhaps ", "Something along the lines of ", "Ideally "))
    return _sentence(f"{lead}{core} {tail}") + pick(rng, ("?", "... if that makes sense.", ". Open to ideas!"))


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
            pre.append(pick(rng, _JA_SETTING[m.role]).format(f=f))
            fields["シーン"].append(f)
        elif m.role == "reference":
            pre.append(pick(rng, _JA_REF).format(f=f))
            fields["参考"].append(f)
        elif m.modifier not in POSITIVE:
            if m.modifier == "not_too":
                phrase = pick(rng, _JA_NOT_TOO).format(f=f)
            else:
                phrase = pick(rng, _JA_NEG_ADJ if kind in ADJECTIVE_KINDS else _JA_NEG_NOUN).format(f=f)
            negs.append(phrase)
            fields["NG"].append(phrase)
        elif kind in ADJECTIVE_KINDS:
            table = {"plain": ("{f}",), "intensified": _JA_INTENS, "hedged": _JA_HEDGE}[m.modifier]
            adjs.append(pick(rng, table).format(f=f))
            fields["雰囲気"].append(adjs[-1])
        elif kind == "instrument":
            pre.append(pick(rng, _JA_INST[m.modifier]).format(f=f))
            fields["楽器"].append(f)
        else:
            pre.append(pick(rng, _JA_GENRE[m.modifier]).format(f=f))
            fields["ジャンル"].append(f)
    noun = pick(rng, _JA_NOUN)
    mood = ("感じで、".join(adjs) + ("感じの" if rng.random() < 0.5 else "")) if adjs else ""
    core = "".join(pre) + mood + noun
    neg = ("、".join(negs) + "感じでお願いします。") if negs else ""
    r = plan.register
    if r == "ja_casual":
        return f"{core}をお願いします！{neg}" + pick(rng, ("", "よろしくです〜", "急ぎじゃないです。"))
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
