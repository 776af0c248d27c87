"""The request log's records: a logged request, a review, feedback, the label check people's labels pass, and
their rows in the SQLite tables (``request_log.py`` stores them)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from kotone_pipeline.domain.data.dims import DIMS

ReviewKind = Literal["label", "skip", "junk"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:20]


class LoggedRequest(BaseModel):
    model_config = {"protected_namespaces": ()}

    seq: int
    request_id: str
    at: str
    text: str
    source_type: str
    model_id: str
    prediction: dict[str, int]
    latency_ms: float


class Review(BaseModel):
    model_config = {"protected_namespaces": ()}

    seq: int
    request_id: str
    reviewer: str
    at: str
    kind: ReviewKind
    labels: dict[str, int] | None = None
    model_id: str | None = None  # the model whose prediction the reviewer was shown
    prediction_shown: dict[str, int] | None = None
    reason: str | None = None  # why the queue showed it


class Feedback(BaseModel):
    seq: int
    request_id: str
    at: str
    labels: dict[str, int] | None = None
    comment: str | None = None


class ReviewError(ValueError):
    """A review that cannot be stored (unknown request, a second review by the same reviewer, bad labels)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def check_labels(labels: Any) -> dict[str, int]:
    """Six integer dims in 0..10, nothing else; the message names what is wrong."""
    if not isinstance(labels, dict):
        raise ReviewError("labels must be an object with the six dims")
    missing = [d for d in DIMS if d not in labels]
    unknown = sorted(set(labels) - set(DIMS))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise ReviewError(f"labels: {'; '.join(parts)} (expected {', '.join(DIMS)})")
    out = {}
    for dim in DIMS:
        value = labels[dim]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
            raise ReviewError(f"labels.{dim}: expected an integer 0..10, got {value!r}")
        out[dim] = value
    return out


def request_from_row(row: tuple[Any, ...]) -> LoggedRequest:
    return LoggedRequest(
        seq=row[0],
        request_id=row[1],
        at=row[2],
        text=row[3],
        source_type=row[4],
        model_id=row[5],
        prediction=json.loads(row[6]),
        latency_ms=row[7],
    )


def review_from_row(row: tuple[Any, ...]) -> Review:
    return Review(
        seq=row[0],
        request_id=row[1],
        reviewer=row[2],
        at=row[3],
        kind=row[4],
        labels=json.loads(row[5]) if row[5] else None,
        model_id=row[6],
        prediction_shown=json.loads(row[7]) if row[7] else None,
        reason=row[8],
    )


def reviewed_labels(reviews: Sequence[Review]) -> dict[str, dict[str, int]]:
    """One label vector per request: the rounded mean of its reviewers' labels (skips and junk left out)."""
    by_request: dict[str, list[dict[str, int]]] = {}
    for review in reviews:
        if review.kind == "label" and review.labels:
            by_request.setdefault(review.request_id, []).append(review.labels)
    return {
        request_id: {d: int(round(sum(lab[d] for lab in labels) / len(labels))) for d in DIMS}
        for request_id, labels in by_request.items()
    }
