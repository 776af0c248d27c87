"""The flywheel's steps: what the served champion answered, and what people said of it, as cycle data.

``served_requests`` cuts the request log at this cycle (requests since the previous cycle's cut),
masks, deduplicates and tags them; ``reviewed_requests`` takes the reviews made since the previous
cycle's cut, one label per request, routed by a stable hash to the training side or the field set.
Both freeze their cut at first materialization, so a re-run gives the same outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import ReviewedRequestsDoc, ServedRequestsDoc
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.loop.served import detect_lang, mask_pii, reviewed_pair, route, text_key
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.request_log import RequestLog, reviewed_labels

SERVED_FILE = "served_requests"
REVIEWS_FILE = "reviews"
TRAINING_SIDE_FILE = "reviewed_training"
FIELD_SIDE_FILE = "reviewed_field"


def _previous_cut(
    artifacts: CycleArtifacts, doc: type[ServedRequestsDoc | ReviewedRequestsDoc], earlier: Sequence[str]
) -> int:
    cuts = [d.upto_seq for c in earlier if (d := artifacts.read_if_present(c, doc)) is not None]
    return max(cuts, default=0)


def step_served_requests(
    artifacts: CycleArtifacts, log: RequestLog, cycle_id: str, earlier_cycles: Sequence[str]
) -> ServedRequestsDoc:
    """Requests logged since the previous cycle's cut: masked, deduplicated by normalised text, with the
    language and the prediction the champion served."""
    previous = artifacts.read_if_present(cycle_id, ServedRequestsDoc)
    after = previous.after_seq if previous else _previous_cut(artifacts, ServedRequestsDoc, earlier_cycles)
    upto = previous.upto_seq if previous else max(after, log.last_seq("requests"))
    logged = log.requests_between(after, upto)
    masked_counts: Counter[str] = Counter()
    rows, seen = [], set()
    for request in logged:
        text, counts = mask_pii(request.text)
        masked_counts.update(counts)
        key = text_key(text)
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            {
                "request_id": request.request_id,
                "at": request.at,
                "text": text,
                "lang": detect_lang(text),
                "source_type": request.source_type,
                "model_id": request.model_id,
                "prediction": request.prediction,
                "latency_ms": request.latency_ms,
            }
        )
    artifacts.write_rows(cycle_id, SERVED_FILE, rows)
    doc = ServedRequestsDoc(
        cycle_id=cycle_id,
        after_seq=after,
        upto_seq=upto,
        logged=len(logged),
        unique=len(rows),
        masked=dict(masked_counts),
        by_lang=dict(Counter(r["lang"] for r in rows)),
        by_model=dict(Counter(r["model_id"] for r in rows)),
        waiting_for_review=previous.waiting_for_review if previous else len(log.unreviewed()),
    )
    artifacts.write(cycle_id, doc)
    return doc


@dataclass
class ReviewedStep:
    doc: ReviewedRequestsDoc
    training: list[Pair]  # this cycle's new training-side rows
    field: list[Pair]  # this cycle's new field-set rows


def step_reviewed_requests(
    artifacts: CycleArtifacts, log: RequestLog, config: LoopConfig, cycle_id: str, earlier_cycles: Sequence[str]
) -> ReviewedStep:
    """Reviews since the previous cycle's cut, with provenance; each reviewed request (one label: the
    rounded mean of its reviewers') routed to the training side or the field set by its text's hash."""
    previous = artifacts.read_if_present(cycle_id, ReviewedRequestsDoc)
    after = previous.after_seq if previous else _previous_cut(artifacts, ReviewedRequestsDoc, earlier_cycles)
    upto = previous.upto_seq if previous else max(after, log.last_seq("reviews"))
    reviews = log.reviews_between(after, upto)
    labels = reviewed_labels(reviews)
    reviewers: dict[str, list[str]] = {}
    for review in reviews:
        if review.kind == "label":
            reviewers.setdefault(review.request_id, []).append(review.reviewer)
    training, field = [], []
    provenance: list[dict[str, Any]] = []
    for review in reviews:
        provenance.append(review.model_dump(mode="json"))
    for request_id, vector in labels.items():
        request = log.request(request_id)
        if request is None:
            continue  # trimmed from the log by its size or age cap before the cut
        text, _ = mask_pii(request.text)
        side = route(text, config.field_share)
        pair = reviewed_pair(
            request_id,
            text,
            request.source_type,
            vector,
            side,
            cycle_id=cycle_id,
            reviewers=reviewers[request_id],
            weight=config.reviewed_weight,
        )
        (field if side == "field" else training).append(pair)
    artifacts.write_rows(cycle_id, REVIEWS_FILE, provenance)
    artifacts.write_rows(cycle_id, TRAINING_SIDE_FILE, training)
    artifacts.write_rows(cycle_id, FIELD_SIDE_FILE, field)
    kinds = Counter(r.kind for r in reviews)
    doc = ReviewedRequestsDoc(
        cycle_id=cycle_id,
        after_seq=after,
        upto_seq=upto,
        reviews=len(reviews),
        labelled=kinds["label"],
        skipped=kinds["skip"],
        junk=kinds["junk"],
        reviewers=sorted({r.reviewer for r in reviews}),
        to_training=len(training),
        to_field=len(field),
        training_total=len(reviewed_rows(artifacts, [*earlier_cycles, cycle_id], "training", extra=training)),
        field_total=len(reviewed_rows(artifacts, [*earlier_cycles, cycle_id], "field", extra=field)),
        field_share=config.field_share,
        weight=config.reviewed_weight,
    )
    artifacts.write(cycle_id, doc)
    return ReviewedStep(doc, training, field)


def reviewed_rows(
    artifacts: CycleArtifacts, cycles: Sequence[str], side: str, extra: Sequence[Pair] = ()
) -> list[Pair]:
    """One side of every listed cycle's reviewed requests, one row per text (a later review wins)."""
    name = TRAINING_SIDE_FILE if side == "training" else FIELD_SIDE_FILE
    by_id: dict[str, Pair] = {}
    for cycle in cycles:
        if artifacts.has_rows(cycle, name):
            for pair in artifacts.read_pairs(cycle, name):
                by_id[pair.id] = pair
    for pair in extra:
        by_id[pair.id] = pair
    return list(by_id.values())
