"""Lexicon patches under ``$KOTONE_HOME/lexicon/``: proposed per cycle, applied only once accepted.

Layout::

    $KOTONE_HOME/lexicon/
      patches/<cycle>.json       a cycle's proposed LexiconPatch (never applied by being here)
      accepted.jsonl             accepted entries, one per line, in the order they were accepted
      versions/<version>.json    each lexicon version reached: its base version and accepted entry ids

The lexicon in effect is the committed one plus the accepted entries (``current``); its version is a
hash of its content (``lexicon_version``), so the same content always has the same version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kotone_pipeline.domain.data.jsonl import write_json
from kotone_pipeline.domain.requests.lexicon import Lexicon, default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import LexiconPatch, PatchEntry, apply_patch, lexicon_version
from kotone_pipeline.services.home import kotone_home
from kotone_pipeline.services.jobs import validate_cycle_id

LEXICON_DIR = "lexicon"


class AcceptedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cycle_id: str
    entry: PatchEntry
    accepted_by: str
    accepted_at: str


class LexiconStore:
    def __init__(self, home: Path | None = None) -> None:
        self.root = (home if home is not None else kotone_home()) / LEXICON_DIR

    def patch_path(self, cycle_id: str) -> Path:
        return self.root / "patches" / f"{validate_cycle_id(cycle_id)}.json"

    @property
    def accepted_path(self) -> Path:
        return self.root / "accepted.jsonl"

    def save_patch(self, cycle_id: str, patch: LexiconPatch) -> Path:
        path = self.patch_path(cycle_id)
        write_json(path, patch.model_dump(mode="json"))
        return path

    def load_patch(self, cycle_id: str) -> LexiconPatch:
        path = self.patch_path(cycle_id)
        if not path.is_file():
            raise ValueError(f"no lexicon patch proposed for cycle {cycle_id!r} ({path} not found)")
        return LexiconPatch.model_validate_json(path.read_text(encoding="utf-8"))

    def accepted(self) -> list[AcceptedEntry]:
        if not self.accepted_path.is_file():
            return []
        lines = self.accepted_path.read_text(encoding="utf-8").splitlines()
        return [AcceptedEntry.model_validate_json(line) for line in lines if line.strip()]

    def current(self, base: Lexicon | None = None) -> tuple[Lexicon, str]:
        """The lexicon in effect (committed + accepted entries) and its version."""
        lexicon = apply_patch(base if base is not None else default_lexicon(), [a.entry for a in self.accepted()])
        return lexicon, lexicon_version(lexicon)

    def accept(
        self,
        cycle_id: str,
        entry_ids: Sequence[str] | None = None,
        accepted_by: str = "cli",
        base: Lexicon | None = None,
    ) -> tuple[list[PatchEntry], str]:
        """Accept the named entries of a cycle's patch (all when None): ``(newly accepted, new version)``.

        Unknown ids, or entries that would break the lexicon (a form naming two concepts), raise before
        anything is written; an entry accepted before is not accepted twice."""
        patch = self.load_patch(cycle_id)
        by_id = {e.id: e for e in patch.entries}
        wanted = list(by_id) if entry_ids is None else list(dict.fromkeys(entry_ids))
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            known = ", ".join(by_id) or "(none)"
            raise ValueError(f"cycle {cycle_id}: unknown patch entr(y/ies) {', '.join(unknown)}; proposed: {known}")
        earlier = self.accepted()
        done = {(a.cycle_id, a.entry.id) for a in earlier}
        new = [by_id[i] for i in wanted if (cycle_id, i) not in done]
        base = base if base is not None else default_lexicon()
        lexicon = apply_patch(base, [a.entry for a in earlier] + new)  # raises LexiconError on a conflict
        version = lexicon_version(lexicon)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        records = [AcceptedEntry(cycle_id=cycle_id, entry=e, accepted_by=accepted_by, accepted_at=now) for e in new]
        self.root.mkdir(parents=True, exist_ok=True)
        with self.accepted_path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n")
        write_json(
            self.root / "versions" / f"{version}.json",
            {
                "version": version,
                "base_version": lexicon_version(base),
                "entries": [[a.cycle_id, a.entry.id] for a in [*earlier, *records]],
            },
        )
        return new, version
