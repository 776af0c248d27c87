"""Served requests and people's reviews as training and eval data: masking, language, dedup, routing.

Masking: before a logged request leaves the log (into a cycle's files, a dataset version, a report),
e-mail addresses become ``<email>``, URLs ``<url>`` and phone numbers (7+ digits with the usual
separators, or a leading +) ``<phone>``. Plain regular expressions: requests are short, and a person
reviewing the text still reads what the customer asked for. What is masked is counted.

Routing: a reviewed request goes to the *training side* (origin ``reviewed``) or to the *field set*
(the growing eval set of people's requests that no model trains on) by a stable hash of its
normalised text, so it never moves sides, and a paraphrase typed identically twice lands on one side.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import Pair, Vector, normalize_text

Side = Literal["training", "field"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w])(?:\+\d[\d\s().-]{6,}\d|\d[\d\s().-]{5,}\d)(?![\w])")


def mask_pii(text: str) -> tuple[str, Counter[str]]:
    """The text with e-mails, URLs and phone numbers replaced by placeholders, and what was replaced."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], token: str, value: str) -> str:
        def repl(match: re.Match[str]) -> str:
            if token == "phone" and sum(c.isdigit() for c in match.group(0)) < 7:
                return match.group(0)  # a year range or a tempo, not a phone number
            counts[token] += 1
            return f"<{token}>"

        return pattern.sub(repl, value)

    masked = sub(_EMAIL, "email", text)
    masked = sub(_URL, "url", masked)
    masked = sub(_PHONE, "phone", masked)
    return masked, counts


def detect_lang(text: str) -> str:
    """``ja``, ``ko``, ``zh`` or ``en`` from the script of the letters (enough to tell the sets apart:
    the loop's people write English and Japanese); ``und`` for text without letters."""
    kana = han = hangul = latin = 0
    for ch in text:
        if "\u3040" <= ch <= "\u30ff" or "\uff66" <= ch <= "\uff9f":
            kana += 1
        elif "\u4e00" <= ch <= "\u9fff":
            han += 1
        elif "\uac00" <= ch <= "\ud7af":
            hangul += 1
        elif ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
            latin += 1
    if kana:
        return "ja"
    if hangul:
        return "ko"
    if han > latin:
        return "zh"
    return "en" if latin else "und"


def text_key(text: str) -> str:
    """The normalised text's hash: requests with the same key are one request."""
    return hashlib.sha256(normalize_text(text).encode()).hexdigest()


def route(text: str, field_share: float) -> Side:
    """``field`` for a stable ``field_share`` of requests (by text hash), else ``training``."""
    bucket = int(text_key(text)[:8], 16) / 0xFFFFFFFF
    return "field" if bucket < field_share else "training"


def reviewed_pair(
    request_id: str,
    text: str,
    source_type: str,
    labels: dict[str, int],
    side: Side,
    *,
    cycle_id: str,
    reviewers: Sequence[str],
    weight: float = 1.0,
) -> Pair:
    """A reviewed request as a pair: one group per text, so a split never separates its copies."""
    key = text_key(text)[:16]
    return Pair(
        id=f"rev_{key}",
        group_id=f"rev_{key}",
        source_type=source_type,  # type: ignore[arg-type]
        text=text,
        vector=Vector(**{d: labels[d] for d in DIMS}),
        origin="reviewed",
        cycle=cycle_id,
        meta={
            "request_id": request_id,
            "side": side,
            "reviewers": list(reviewers),
            "weight": weight,
            "lang": detect_lang(text),
        },
    )
