"""Quality filter for generated pairs (docs/design.md § Quality filter): one reason per rejected row,
counts per reason."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from kotone_pipeline.domain.data.bulk import paused_gc
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.requests.catalog import Catalog, load_catalog
from kotone_pipeline.domain.requests.writer import parse_rule_prompt

MIN_REQUEST_CHARS = 16
MAX_REQUEST_CHARS = 260
# The leak pattern of docs/design.md § Quality filter; case-insensitive so a capitalised "Energy" at a
# sentence start leaks too.
LEAK_PATTERN = re.compile(
    r"\b(energy|warmth|brightness|acousticness|complexity|nostalgia)\b|\b\d{1,3}\b", re.IGNORECASE
)
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")

REASONS: tuple[str, ...] = (
    "too_short",
    "too_long",
    "no_letters",
    "leaks_number",
    "leaks_dim_name",
    "bad_rule_prompt",
    "bad_source_type",
    "duplicate",
    "near_duplicate",
)

Row = TypeVar("Row")


class QualityReport(BaseModel):
    seen: int = 0
    kept: int = 0
    rejected: dict[str, int] = {}
    kept_by_source_type: dict[str, int] = {}

    def count(self, reason: str) -> int:
        return self.rejected.get(reason, 0)

    def as_dict(self) -> dict[str, int]:
        """Flat counts: seen, kept and every reason (zeros included), for metadata and logs."""
        return {"seen": self.seen, "kept": self.kept, **{r: self.count(r) for r in REASONS}}

    def to_markdown(self) -> str:
        lines = ["| outcome | rows |", "|---|---:|", f"| seen | {self.seen} |", f"| kept | {self.kept} |"]
        lines += [f"| rejected: {r} | {self.count(r)} |" for r in REASONS]
        return "\n".join(lines)


def dedup_key(text: str) -> str:
    """Casefolded text with runs of whitespace collapsed (what counts as "the same text")."""
    return " ".join(text.split()).casefold()


_NOT_WORD = re.compile(r"[\W_]+")


def near_duplicate_keys(text: str) -> tuple[str, frozenset[str] | None]:
    """Two keys under which request texts count as the same request: the text without case,
    punctuation or spacing ("Calm piano, please!" = "calm piano please"), and, for texts of four
    words or more, the set of its words (the same words reordered)."""
    words = _NOT_WORD.sub(" ", text.casefold()).split()
    return "".join(words), frozenset(words) if len(words) >= 4 else None


def request_text_problem(text: str) -> str | None:
    """Why a request text is unusable, or None when it passes every text check."""
    length = len(text)
    if length < MIN_REQUEST_CHARS:
        return "too_short"
    if length > MAX_REQUEST_CHARS:
        return "too_long"
    if _LETTER.search(text) is None:
        return "no_letters"
    # The leak pattern can only match where a digit or a dim name occurs; checking that first is
    # 3x cheaper than the pattern itself, which dominated the filter's cost on big teacher runs.
    folded = text.casefold()
    if _DIGIT.search(text) is None and not any(name in folded for name in DIMS):
        return None
    leak = LEAK_PATTERN.search(text)
    if leak is not None:
        return "leaks_dim_name" if leak.group(1) else "leaks_number"
    return None


def rule_prompt_ok(text: str, catalog: Catalog | Mapping[str, str]) -> bool:
    """The prompt names exactly one part for each slot, each a known part of that slot.

    ``catalog`` may also be a part_id -> slot mapping (what ``filter_rows`` passes, built once).
    """
    slot_of = catalog if isinstance(catalog, Mapping) else {p.part_id: p.slot for p in catalog.parts}
    parts = parse_rule_prompt(text)
    if parts is None:
        return False
    return all(slot_of.get(part_id) == slot for slot, part_id in parts.items())


def filter_rows(
    rows: Iterable[Row],
    existing: Iterable[str] | None = None,
    *,
    catalog: Catalog | None = None,
) -> tuple[list[Row], QualityReport]:
    """Keep the rows (dicts or Pairs) that pass every check; the first failing check is the reason.

    ``existing``: texts already in use elsewhere (any source type); a row repeating one is a duplicate.
    """
    catalog = catalog if catalog is not None else load_catalog()
    slot_of = {p.part_id: p.slot for p in catalog.parts}
    existing = list(existing) if existing is not None else None
    taken: set[Any] = {dedup_key(t) for t in existing} if existing is not None else set()
    seen_keys: set[tuple[str, str]] = set()
    near_keys: set[object] = set()
    if existing is not None:
        for t in existing:
            near_keys.update(k for k in near_duplicate_keys(t) if k)
    # Rule prompts repeat across groups (one text per combination): after its first sighting a text's
    # outcome for any later row is known (duplicate if it was kept, else the same rejection).
    rule_outcome: dict[str, str] = {}
    rejected = dict.fromkeys(REASONS, 0)
    kept_by_source: dict[str, int] = {}
    kept: list[Row] = []
    seen = 0
    with paused_gc():
        for row in rows:
            seen += 1
            if isinstance(row, dict):
                source_type, text = row.get("source_type"), row.get("text")
            else:
                source_type, text = getattr(row, "source_type", None), getattr(row, "text", None)
            if not isinstance(text, str):
                text = ""
            if source_type == "request_text":
                reason = request_text_problem(text)
            elif source_type == "rule_prompt":
                reason = rule_outcome.get(text)
                if reason is None:
                    reason = None if rule_prompt_ok(text, slot_of) else "bad_rule_prompt"
                    rule_outcome[text] = reason or "duplicate"
                elif reason == "duplicate":
                    rejected[reason] += 1
                    continue
            else:
                reason = "bad_source_type"
            if reason is None:
                key = dedup_key(text)
                pair_key = (source_type, key)
                if pair_key in seen_keys or key in taken:
                    reason = "duplicate"
                elif source_type == "request_text":
                    keys = [k for k in near_duplicate_keys(text) if k]
                    if any(k in near_keys for k in keys):
                        reason = "near_duplicate"
                    else:
                        near_keys.update(keys)
                        seen_keys.add(pair_key)
                else:
                    seen_keys.add(pair_key)
            if reason is None:
                kept.append(row)
                kept_by_source[source_type] = kept_by_source.get(source_type, 0) + 1  # type: ignore[index]
            else:
                rejected[reason] += 1
    report = QualityReport(
        seen=seen,
        kept=len(kept),
        rejected={r: n for r, n in rejected.items() if n},
        kept_by_source_type=kept_by_source,
    )
    return kept, report
