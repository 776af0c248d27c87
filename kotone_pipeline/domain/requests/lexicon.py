"""The concept lexicon (docs/design.md § Teacher): the one source of musical knowledge for requests and rule prompts.

``data/lexicon/<kind>.yaml`` holds the concepts of one kind. A concept names the dims it really
moves (0..100) and how people say it in English and Japanese. The request composer writes from it,
the label rule scores from it, and the rule baseline reads requests with it, so all three agree by
construction. Every file is schema-checked on load; an error names the file, the concept and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kotone_pipeline.domain.data.dims import DIMS, SLOTS
from kotone_pipeline.domain.data.jsonl import describe_validation_error
from kotone_pipeline.domain.data.paths import data_dir

LEXICON_DIR = "lexicon"
Kind = Literal["genre", "era", "instrument", "scene", "use", "mood", "texture", "part"]
KINDS: tuple[str, ...] = ("genre", "era", "instrument", "scene", "use", "mood", "texture", "part")
# Kinds whose surface forms are adjectives ("something calm"); the others are noun phrases.
ADJECTIVE_KINDS = frozenset({"mood", "texture"})
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
ARTICLE = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)


class LexiconError(ValueError):
    """A lexicon file is missing or has a bad entry; the message names the file, concept and field."""


class Concept(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    kind: Kind
    en: tuple[str, ...] = Field(min_length=1)
    ja: tuple[str, ...] = Field(min_length=1)
    dims: dict[str, int] = Field(min_length=1)
    note: str = Field(min_length=1, max_length=200)
    slot: str | None = None  # catalog parts only

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"{value!r} is not a valid id (lower-case letters, digits, underscores)")
        return value

    @field_validator("en", "ja")
    @classmethod
    def _forms(cls, forms: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(" ".join(str(f).split()) for f in forms)
        if any(not f for f in cleaned):
            raise ValueError("surface forms must not be empty")
        if len({f.casefold() for f in cleaned}) != len(cleaned):
            raise ValueError("surface forms repeat within the concept")
        return cleaned

    @field_validator("dims")
    @classmethod
    def _dims(cls, dims: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(dims) - set(DIMS))
        if unknown:
            raise ValueError(f"unknown dim(s) {', '.join(unknown)} (expected some of {', '.join(DIMS)})")
        for dim, value in dims.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ValueError(f"{dim}: expected an integer 0..100, got {value!r}")
        return {d: dims[d] for d in DIMS if d in dims}

    @field_validator("slot")
    @classmethod
    def _slot(cls, slot: str | None) -> str | None:
        if slot is not None and slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")
        return slot

    def offset(self, dim: str) -> float | None:
        """How far the concept moves ``dim`` from the neutral 50, or None when it says nothing."""
        value = self.dims.get(dim)
        return None if value is None else value - 50.0

    def forms(self, lang: str) -> tuple[str, ...]:
        return self.en if lang == "en" else self.ja


class _LexiconFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    concepts: list[dict[str, Any]] = Field(min_length=1)


def _opposed(a: Concept, b: Concept) -> list[str]:
    """Dims that the two concepts push to opposite sides of 50."""
    out = []
    for dim in DIMS:
        oa, ob = a.offset(dim), b.offset(dim)
        if oa is not None and ob is not None and oa * ob < 0:
            out.append(dim)
    return out


@dataclass(frozen=True)
class Lexicon:
    concepts: tuple[Concept, ...]
    sources: tuple[Path, ...] = ()

    @cached_property
    def by_id(self) -> dict[str, Concept]:
        return {c.id: c for c in self.concepts}

    @cached_property
    def by_kind(self) -> dict[str, tuple[Concept, ...]]:
        return {k: tuple(c for c in self.concepts if c.kind == k) for k in KINDS}

    def __len__(self) -> int:
        return len(self.concepts)

    def __iter__(self) -> Iterator[Concept]:
        return iter(self.concepts)


# libyaml's safe loader when PyYAML was built with it: the same documents, ~10x faster to parse, which
# every process that fits or serves a model pays once.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def lexicon_dir() -> Path:
    return data_dir() / LEXICON_DIR


def _load_file(path: Path) -> list[Concept]:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise LexiconError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise LexiconError(f"{path}: cannot read ({exc})") from exc
    try:
        doc = _LexiconFile.model_validate(raw)
    except ValidationError as exc:
        raise LexiconError(f"{path}: {describe_validation_error(exc)}") from exc
    concepts = []
    for index, entry in enumerate(doc.concepts, start=1):
        label = f"concept {entry.get('id')!r}" if isinstance(entry, dict) and entry.get("id") else f"concept #{index}"
        if isinstance(entry, dict) and entry.get("kind", doc.kind) != doc.kind:
            raise LexiconError(f"{path}: {label}: kind: {entry.get('kind')!r} in a file of kind {doc.kind!r}")
        try:
            concepts.append(Concept.model_validate({**entry, "kind": doc.kind}))
        except ValidationError as exc:
            raise LexiconError(f"{path}: {label}: {describe_validation_error(exc)}") from exc
        except TypeError as exc:
            raise LexiconError(f"{path}: {label}: expected a mapping, got {type(entry).__name__}") from exc
    return concepts


def check_lexicon(concepts: Iterable[tuple[Path, Concept]]) -> None:
    """Cross-file invariants: unique ids, and no surface form shared by concepts with opposite effects."""
    seen_ids: dict[str, Path] = {}
    seen_forms: dict[str, tuple[Path, Concept]] = {}
    for path, concept in concepts:
        if concept.id in seen_ids:
            raise LexiconError(f"{path}: concept {concept.id!r}: id: also defined in {seen_ids[concept.id]}")
        seen_ids[concept.id] = path
        for form in (*concept.en, *concept.ja):
            # "a music box" and "music box" are one form: the reader matches either.
            key = ARTICLE.sub("", form).casefold() or form.casefold()
            if key in seen_forms and seen_forms[key][1].id != concept.id:
                other_path, other = seen_forms[key]
                opposed = _opposed(concept, other)
                detail = f" with opposite effects on {', '.join(opposed)}" if opposed else ""
                raise LexiconError(
                    f"{path}: concept {concept.id!r}: surface form {form!r} is also a form of "
                    f"{other.id!r} ({other_path}){detail}; a form must name one concept"
                )
            seen_forms[key] = (path, concept)


def load_lexicon(directory: Path | str | None = None) -> Lexicon:
    """Every ``*.yaml`` under ``directory`` (default ``data/lexicon``), checked; LexiconError on any problem."""
    directory = Path(directory) if directory is not None else lexicon_dir()
    if not directory.is_dir():
        raise LexiconError(f"{directory}: lexicon directory not found")
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise LexiconError(f"{directory}: no *.yaml lexicon files")
    located = [(path, concept) for path in paths for concept in _load_file(path)]
    check_lexicon(located)
    return Lexicon(concepts=tuple(c for _, c in located), sources=tuple(paths))


@lru_cache(maxsize=4)
def _cached(directory: str, stamp: tuple[tuple[str, int, int], ...]) -> Lexicon:
    return load_lexicon(directory)


def default_lexicon() -> Lexicon:
    """The committed lexicon, loaded once per process (reloaded when a file changes)."""
    directory = lexicon_dir()
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(directory.glob("*.yaml")))
    return _cached(str(directory), stamp)
