"""The teacher learns from people (issue 23): lexicon changes proposed where people's labels and the
lexicon's reading disagree, a version for every lexicon, and a patch that applies only when accepted.

``propose_lexicon_patch`` reads people's rows with the lexicon and proposes two kinds of entry:

- ``add``: a phrase of those requests the lexicon does not know (English words and word pairs outside
  every matched form; Japanese katakana/kanji runs), as a new concept whose per-dim values are fitted
  on the rows that say it;
- ``adjust``: new values for dims of a known concept that the rows mentioning it read wrongly.

Values are fitted on a grid (0, 10, ..., 100) through the label rule itself (``label_100``), so an entry
means exactly what it did in the fit once it is in the lexicon. Every entry carries its evidence rows
and its gain in cross-validation grouped by ``group_id``: fitted on the other folds' rows, scored on a
fold's rows, as the drop in the label rule's MAE over all people rows. Only entries with a positive
gain are proposed; the patch as a whole is scored the same way.

Nothing here changes a lexicon: ``apply_patch`` builds a new one from a base and entries a person
accepted (the store under ``$KOTONE_HOME`` keeps which), and ``lexicon_version`` names any lexicon by
the hash of its content, so a dataset can record which lexicon labelled its rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from sklearn.model_selection import GroupKFold

from kotone_pipeline.domain.data.dims import DIMS, to_scale10
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.model.correction import is_people_row
from kotone_pipeline.domain.requests.label_rule import Mention, Modifier, default_role, label_100
from kotone_pipeline.domain.requests.lexicon import Concept, Lexicon, check_lexicon
from kotone_pipeline.domain.requests.lexicon_reader import LexiconReader, strip_article

LEXICON_META_KEY = "lexicon"  # Pair.meta: the version of the lexicon whose rule labelled the row
NEW_KIND = "mood"  # a new phrase is read as a descriptor (salience 1.0), as it was fitted
GRID = tuple(range(0, 101, 10))  # candidate 0..100 values: one step is one point on the 0..10 scale
DEFAULT_MIN_SUPPORT = 3  # rows that must say a phrase (or mention a concept) before it is fitted
SHRINK = 1.0  # summed row errors one point of change must save (see _fit)
DEFAULT_MAX_CANDIDATES = 150  # phrases fitted per patch, most-said first (keeps a proposal ~seconds)
# Words that say nothing about the music in a commission; the rest of sklearn's stop list too.
_FILLER = frozenset({"music", "track", "tracks", "song", "songs", "something", "want", "need", "like", "please",
                     "pls", "bgm", "thing", "things", "feel", "feels", "maybe", "really", "just", "kind", "sort",
                     "bit", "lot", "lots", "looking", "make", "made", "think", "thanks", "hi", "hey"})  # fmt: skip
_EN_WORD = re.compile(r"[a-z][a-z'-]*[a-z]")  # words with an apostrophe ("don't") are skipped below
_JA_RUN = re.compile(r"[\u30a0-\u30ff\u4e00-\u9fff]{2,8}")  # katakana or kanji: content words, not particles

Action = Literal["add", "adjust"]


class PatchEntry(BaseModel):
    """One proposed change. ``dims`` are the 0..100 values the entry sets (for ``adjust``, only the
    changed dims; ``previous`` holds what they were)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    action: Action
    concept_id: str
    phrase: str | None = None
    lang: Literal["en", "ja"] | None = None
    dims: dict[str, int] = Field(min_length=1)
    previous: dict[str, int] = Field(default_factory=dict)
    evidence: list[str]  # pair ids of the people rows it was fitted on
    groups: int
    cv_gain: float  # drop of the label rule's MAE over all people rows in grouped CV (> 0 is better)
    cv_gain_on_evidence: float  # the same drop over the rows that say it, relative to their base MAE


class LexiconPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_version: str
    rows: int
    groups: int
    rows_by_origin: dict[str, int]
    folds: int
    cv_base_mae: float | None  # the base lexicon's rule on people rows (grouped CV: no fitting involved)
    cv_patched_mae: float | None  # every entry together, fitted on the other folds
    entries: list[PatchEntry]


# --- versions -------------------------------------------------------------------------------------------


def lexicon_version(lexicon: Lexicon) -> str:
    """``lex-`` + 12 hex digits of the sha256 of the concepts' content (sorted by id; file layout aside)."""
    doc = [c.model_dump(mode="json") for c in sorted(lexicon.concepts, key=lambda c: c.id)]
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "lex-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def stamp_lexicon_version(pairs: Iterable[Pair], version: str) -> list[Pair]:
    """Rows the lexicon's rule labelled, stamped with the lexicon's version (unless stamped already);
    people's rows are not the rule's and stay as they are. The stamp is part of each row's bytes, so a
    dataset version (a hash of its rows) changes with the lexicon that labelled it."""
    out = []
    for pair in pairs:
        if is_people_row(pair) or pair.meta.get(LEXICON_META_KEY):
            out.append(pair)
        else:
            out.append(pair.model_copy(update={"meta": {**pair.meta, LEXICON_META_KEY: version}}))
    return out


def apply_patch(lexicon: Lexicon, entries: Sequence[PatchEntry]) -> Lexicon:
    """A new lexicon: ``lexicon`` plus ``entries`` in order (a later adjust of a dim wins). Checked like
    the committed files (unique ids, no form naming two concepts): LexiconError names the conflict."""
    concepts = {c.id: c for c in lexicon.concepts}
    for entry in entries:
        if entry.action == "add":
            concepts[entry.concept_id] = _new_concept(entry.concept_id, entry.phrase or "", entry.dims, entry.evidence)
        else:
            if entry.concept_id not in concepts:
                raise ValueError(f"patch entry {entry.id}: concept {entry.concept_id!r} is not in the lexicon")
            old = concepts[entry.concept_id]
            concepts[entry.concept_id] = old.model_copy(update={"dims": {**old.dims, **entry.dims}})
    patched = tuple(concepts.values())
    check_lexicon((Path("lexicon patch"), c) for c in patched)
    return Lexicon(concepts=patched, sources=lexicon.sources)


def _new_concept(concept_id: str, phrase: str, dims: dict[str, int], evidence: Sequence[str]) -> Concept:
    # Concepts need a form in both languages: the phrase serves as both (Japanese requests write English
    # words in Latin letters too; the committed lexicon's Japanese forms include "EDM" and "BGM").
    return Concept(
        id=concept_id,
        kind=NEW_KIND,
        en=(phrase,),
        ja=(phrase,),
        dims={d: dims[d] for d in DIMS if d in dims},
        note=f"from people's labels ({len(evidence)} rows); accepted lexicon patch entry",
    )


# --- proposing --------------------------------------------------------------------------------------------


@dataclass
class _Row:
    pair: Pair
    y: np.ndarray  # people's 0..10 label
    mentions: list[Mention]  # the base lexicon's reading
    spans: list[tuple[int, int]]


@dataclass
class _Candidate:
    action: Action
    key: str  # the phrase (add) or the concept id (adjust)
    lang: Literal["en", "ja"] | None
    rows: dict[int, Modifier]  # row index -> how the row says it
    concept: Concept | None = None  # adjust: the concept as the base lexicon has it


def _error(mentions: Sequence[Mention], y: np.ndarray) -> np.ndarray:
    return np.abs(np.array([to_scale10(v) for v in label_100(mentions)]) - y)


def _fit(rows: Sequence[_Row], indices: Sequence[int], cand: _Candidate) -> dict[str, int]:
    """Per dim, the grid value that minimises the rule's error on ``indices`` (kept only when it beats
    leaving the dim as it is); the dims are independent in the rule, so one pass per grid value."""
    if not indices:
        return {}
    base = np.array([_error(rows[i].mentions, rows[i].y) for i in indices]).sum(axis=0)
    dims = cand.concept.dims if cand.concept is not None else dict.fromkeys(DIMS, 50)
    best = {d: (base[j], None) for j, d in enumerate(DIMS)}
    for value in GRID:
        errors = np.zeros(len(DIMS))
        for i in indices:
            errors += _error(_mentions(rows[i], cand, dict.fromkeys(dims, value), i), rows[i].y)
        for j, dim in enumerate(DIMS):
            # Each point moved away from today's value (50: no opinion, for a new phrase) must pay for
            # itself: a few rows would otherwise pull values to the ends of the scale.
            cost = errors[j] + SHRINK * abs(value - dims[dim]) / 10 if dim in dims else np.inf
            if cost < best[dim][0]:
                best[dim] = (cost, value)
    fitted = {d: v for d, (_, v) in best.items() if v is not None}
    if cand.concept is not None:  # an adjust that lands on today's value is no change
        fitted = {d: v for d, v in fitted.items() if v != cand.concept.dims.get(d)}
    return fitted


def _mentions(row: _Row, cand: _Candidate, values: dict[str, int], index: int) -> list[Mention]:
    """The row's mentions once the candidate is in the lexicon with ``values`` (0..100 per dim)."""
    if cand.action == "adjust":
        assert cand.concept is not None
        changed = cand.concept.model_copy(update={"dims": {**cand.concept.dims, **values}})
        return [Mention(changed, m.role, m.modifier) if m.concept.id == cand.key else m for m in row.mentions]
    # model_construct: the rule only reads id/kind/dims, and a trial value set may be any dims at all.
    concept = Concept.model_construct(id="_new", kind=NEW_KIND, dims=values)
    return [*row.mentions, Mention(concept, default_role(concept), cand.rows[index])]


def _read_rows(pairs: Sequence[Pair], reader: LexiconReader) -> list[_Row]:
    rows = []
    for pair in pairs:
        found = reader.find(pair.text)
        mentions = [Mention(f.concept, default_role(f.concept), f.modifier) for f in found]
        rows.append(_Row(pair, np.array(pair.vector.values()), mentions, [(f.start, f.end) for f in found]))
    return rows


def _candidates(rows: Sequence[_Row], reader: LexiconReader, min_support: int, limit: int) -> list[_Candidate]:
    known = set(reader._en_index) | {f.casefold() for c in reader.lexicon for f in c.ja}
    phrases: dict[str, _Candidate] = {}
    concepts: dict[str, _Candidate] = {}
    for index, row in enumerate(rows):
        text = row.pair.text
        lowered = text.casefold()
        free = _free_phrases(lowered, row.spans)
        for phrase, lang, start, end in free:
            if phrase in known or strip_article(phrase) in known:
                continue
            modifier = (
                reader._en_modifier(lowered, start, end) if lang == "en" else reader._ja_modifier(text, start, end)
            )
            cand = phrases.setdefault(phrase, _Candidate("add", phrase, lang, {}))
            cand.rows.setdefault(index, modifier)
        for mention in row.mentions:
            cand = concepts.setdefault(
                mention.concept.id, _Candidate("adjust", mention.concept.id, None, {}, mention.concept)
            )
            cand.rows.setdefault(index, mention.modifier)

    def enough(cand: _Candidate) -> bool:
        groups = {rows[i].pair.group_id for i in cand.rows}
        return len(cand.rows) >= min_support and len(groups) >= 2

    said = sorted((c for c in phrases.values() if enough(c)), key=lambda c: (-len(c.rows), c.key))[:limit]
    return said + sorted((c for c in concepts.values() if enough(c)), key=lambda c: c.key)


def _free_phrases(lowered: str, spans: Sequence[tuple[int, int]]) -> list[tuple[str, Literal["en", "ja"], int, int]]:
    """English words and word pairs, and Japanese runs, that no lexicon form already covers."""

    def free(start: int, end: int) -> bool:
        return not any(s < end and start < e for s, e in spans)

    out: list[tuple[str, Literal["en", "ja"], int, int]] = []
    words = [(m.group(0), m.start(), m.end()) for m in _EN_WORD.finditer(lowered)]
    content = [(w, s, e) for w, s, e in words if w not in ENGLISH_STOP_WORDS and w not in _FILLER and "'" not in w]
    for word, start, end in content:
        if free(start, end):
            out.append((word, "en", start, end))
    for (w1, s1, e1), (w2, s2, e2) in zip(content, content[1:], strict=False):
        if lowered[e1:s2] == " " and free(s1, e2):
            out.append((f"{w1} {w2}", "en", s1, e2))
    for match in _JA_RUN.finditer(lowered):
        if free(*match.span()):
            out.append((match.group(0), "ja", *match.span()))
    return out


def _score(
    rows: Sequence[_Row], indices: Sequence[int], cand: _Candidate, values: dict[str, int]
) -> tuple[float, float]:
    """(errors without, errors with) the candidate at ``values`` over the rows in ``indices`` that say it."""
    before = after = 0.0
    for i in map(int, indices):
        if i in cand.rows:
            before += float(_error(rows[i].mentions, rows[i].y).sum())
            after += float(_error(_mentions(rows[i], cand, values, i), rows[i].y).sum())
    return before, after


def propose_lexicon_patch(
    people_rows: Sequence[Pair],
    lexicon: Lexicon,
    *,
    min_support: int = DEFAULT_MIN_SUPPORT,
    folds: int = 5,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> LexiconPatch:
    """Entries where people's labels and the lexicon's reading disagree, each with its grouped-CV gain."""
    pairs = [p for p in people_rows if p.source_type == "request_text"]
    reader = LexiconReader(lexicon)
    rows = _read_rows(pairs, reader)
    groups = np.array([p.group_id for p in pairs])
    n_groups = len(set(groups.tolist()))
    header = {
        "base_version": lexicon_version(lexicon),
        "rows": len(pairs),
        "groups": n_groups,
        "rows_by_origin": dict(sorted(Counter(p.origin for p in pairs).items())),
    }
    if n_groups < 2:
        return LexiconPatch(**header, folds=0, cv_base_mae=None, cv_patched_mae=None, entries=[])
    k = min(folds, n_groups)
    splits = list(GroupKFold(n_splits=k).split(rows, groups=groups))
    base_errors = sum(float(_error(r.mentions, r.y).sum()) for r in rows)
    scale = len(rows) * len(DIMS)

    fitted: list[tuple[_Candidate, dict[str, int], float, float]] = []
    for cand in _candidates(rows, reader, min_support, max_candidates):
        values = _fit(rows, sorted(cand.rows), cand)
        if not values:
            continue  # in-sample it changes nothing: it cannot gain in CV either
        before = after = 0.0
        for train, test in splits:
            fold_values = _fit(rows, [int(i) for i in train if int(i) in cand.rows], cand)
            b, a = _score(rows, test, cand, fold_values) if fold_values else (0.0, 0.0)
            before, after = before + b, after + a
        if after < before:
            fitted.append((cand, values, (before - after) / scale, (before - after) / before))
    entries = _select(rows, fitted, lexicon)
    patched_errors = _cv_patch_errors(rows, splits, [c for c, *_ in fitted if _entry_id(c) in {e.id for e in entries}])
    return LexiconPatch(
        **header,
        folds=k,
        cv_base_mae=base_errors / scale,
        cv_patched_mae=patched_errors / scale if entries else base_errors / scale,
        entries=entries,
    )


def _entry_id(cand: _Candidate) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", cand.key.casefold()).strip("_")
    digest = hashlib.sha1(cand.key.encode("utf-8")).hexdigest()[:6]
    return f"{cand.action}:{slug or 'ja'}_{digest}" if cand.action == "add" else f"adjust:{cand.key}"


def _select(rows: Sequence[_Row], fitted: list, lexicon: Lexicon) -> list[PatchEntry]:
    """Best CV gain first; a phrase inside (or around) a phrase already taken is left out, since the
    reader would only ever see the longer one."""
    entries: list[PatchEntry] = []
    taken: list[str] = []
    for cand, values, gain, relative in sorted(fitted, key=lambda f: (-f[2], f[0].key)):
        if cand.action == "add":
            if any(cand.key in t or t in cand.key for t in taken):
                continue
            taken.append(cand.key)
        entry_id = _entry_id(cand)
        evidence = [rows[i].pair.id for i in sorted(cand.rows)]
        entries.append(
            PatchEntry(
                id=entry_id,
                action=cand.action,
                concept_id=entry_id.replace(":", "_") if cand.action == "add" else cand.key,
                phrase=cand.key if cand.action == "add" else None,
                lang=cand.lang,
                dims=values,
                previous={d: cand.concept.dims[d] for d in values} if cand.concept is not None else {},
                evidence=evidence,
                groups=len({rows[i].pair.group_id for i in cand.rows}),
                cv_gain=round(gain, 6),
                cv_gain_on_evidence=round(relative, 6),
            )
        )
    return entries


def _cv_patch_errors(rows: Sequence[_Row], splits: list, chosen: Sequence[_Candidate]) -> float:
    """Every chosen entry at once, fitted on the other folds, scored on each fold's rows."""
    total = 0.0
    for train, test in splits:
        train_set = set(map(int, train))
        fold_values = [(c, _fit(rows, [i for i in sorted(c.rows) if i in train_set], c)) for c in chosen]
        for i in map(int, test):
            mentions = rows[i].mentions
            for cand, values in fold_values:
                if values and i in cand.rows:
                    mentions = _mentions(_Row(rows[i].pair, rows[i].y, mentions, rows[i].spans), cand, values, i)
            total += float(_error(mentions, rows[i].y).sum())
    return total
