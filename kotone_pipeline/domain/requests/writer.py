"""The rule prompt: one catalog part per slot, written and parsed (docs/design.md § Teacher).

Customer requests are written by the composer (``composer``) from the concept lexicon; the first
version's per-(dim, value) phrase codebook is gone (docs/design.md § Teacher).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kotone_pipeline.domain.data.dims import SLOTS

if TYPE_CHECKING:
    from kotone_pipeline.domain.requests.catalog import Part

RULE_PROMPT_HEADER = "Compose a track from these catalog parts:"
_RULE_LINE = re.compile(r"^\s*(" + "|".join(SLOTS) + r")\s*:\s*(.+?)\s*\(([a-z0-9_]+)\)\s*$")


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
