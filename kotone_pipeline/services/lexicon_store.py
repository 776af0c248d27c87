"""Lexicon patches, proposed per cycle and applied only once accepted, under ``lexicon/`` of the state store
(``$KOTONE_HOME/lexicon/`` by default).

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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kotone_pipeline.domain.data.jsonl import json_bytes
from kotone_pipeline.domain.requests.lexicon import Lexicon, default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import LexiconPatch, PatchEntry, apply_patch, lexicon_version
from kotone_pipeline.services.home import kotone_home
from kotone_pipeline.services.jobs import validate_cycle_id
from kotone_pipeline.services.state_store import LocalStateStore, StateStore, Writes

LEXICON_DIR = "lexicon"
ACCEPTED_FILE = "accepted.jsonl"


class AcceptedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cycle_id: str
    entry: PatchEntry
    accepted_by: str
    accepted_at: str


class LexiconStore:
    """The layout above in a ``StateStore``: ``$KOTONE_HOME/lexicon/`` by default, or ``lexicon/`` of the
    state repo (``KOTONE_STATE_STORE=hf``), so a patch a cycle run proposed is there for a person to accept
    from any machine."""

    def __init__(self, home: Path | None = None, store: StateStore | None = None) -> None:
        if store is None:
            store = LocalStateStore(home if home is not None else kotone_home()).sub(LEXICON_DIR)  # as beside()
        self.store = store

    @classmethod
    def beside(cls, cycle_store: StateStore) -> LexiconStore:
        """The lexicon kept in the same store as the cycles (``lexicon/`` next to ``cycles/``)."""
        return cls(store=cycle_store.sub(LEXICON_DIR))

    def patch_key(self, cycle_id: str) -> str:
        return f"patches/{validate_cycle_id(cycle_id)}.json"

    def save_patch(self, cycle_id: str, patch: LexiconPatch) -> str:
        """Save a cycle's proposed patch; returns where it is (a path, or a URL)."""
        key = self.patch_key(cycle_id)
        self.store.write(key, json_bytes(patch.model_dump(mode="json")))
        return self.store.location(key)

    def load_patch(self, cycle_id: str) -> LexiconPatch:
        key = self.patch_key(cycle_id)
        data = self.store.read(key)
        if data is None:
            raise ValueError(f"no lexicon patch proposed for cycle {cycle_id!r} ({self.store.location(key)} not found)")
        return LexiconPatch.model_validate_json(data)

    def accepted(self) -> list[AcceptedEntry]:
        return _accepted_from(self.store.read(ACCEPTED_FILE))

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
        anything is written; an entry accepted before is not accepted twice, also when two people accept at
        once (the accepted list is changed in one ``update`` of the store)."""
        patch = self.load_patch(cycle_id)
        by_id = {e.id: e for e in patch.entries}
        wanted = list(by_id) if entry_ids is None else list(dict.fromkeys(entry_ids))
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            known = ", ".join(by_id) or "(none)"
            raise ValueError(f"cycle {cycle_id}: unknown patch entr(y/ies) {', '.join(unknown)}; proposed: {known}")
        base = base if base is not None else default_lexicon()
        outcome: list[tuple[list[PatchEntry], str]] = []

        def change(files: Mapping[str, bytes | None]) -> Writes:
            outcome.clear()
            earlier = _accepted_from(files[ACCEPTED_FILE])
            done = {(a.cycle_id, a.entry.id) for a in earlier}
            new = [by_id[i] for i in wanted if (cycle_id, i) not in done]
            lexicon = apply_patch(base, [a.entry for a in earlier] + new)  # raises LexiconError on a conflict
            version = lexicon_version(lexicon)
            outcome.append((new, version))
            if not new:
                return []
            now = datetime.now(UTC).isoformat(timespec="seconds")
            records = [AcceptedEntry(cycle_id=cycle_id, entry=e, accepted_by=accepted_by, accepted_at=now) for e in new]
            every = [*earlier, *records]
            lines = "".join(
                json.dumps(r.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) + "\n" for r in every
            )
            version_doc = {
                "version": version,
                "base_version": lexicon_version(base),
                "entries": [[a.cycle_id, a.entry.id] for a in every],
            }
            return [(ACCEPTED_FILE, lines.encode("utf-8")), (f"versions/{version}.json", json_bytes(version_doc))]

        self.store.update([ACCEPTED_FILE], change)
        return outcome[0]


def _accepted_from(data: bytes | None) -> list[AcceptedEntry]:
    if data is None:
        return []
    return [AcceptedEntry.model_validate_json(line) for line in data.decode("utf-8").splitlines() if line.strip()]
