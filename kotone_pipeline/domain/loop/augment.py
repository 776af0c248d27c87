"""Augmentation (docs/design.md § Augmentation): new training rows aimed at the hard dims, plus replay rows.

* ``plan_counts``: how many generated rows (``desired``) and, on top of them, how many replay rows.
* a generated row ("augmented") takes a source vector, jitters every non-focus dim by a seeded
  integer in [-1, 1], pushes every focus dim 1–3 steps away from the middle (up if the source value
  is >= 5, else down), clamps to 0..10; that is the row's *target*. The composer then writes a request
  aimed at the target (``Composer.compose_for``) and the row's label is what the lexicon rule gives
  for the concepts that request mentions — close to the target, never a label the text cannot justify.
  A focus dim is pushed instead of jittered, so it always ends further from the middle than its
  source (or stays at 0/10 when it is already there); jittering it first could cancel the push.
* a replay row ("replay") aims at the source vector with new wording.

Sources are the failing probe rows, worst first, cycled as often as needed; when there are none,
the base train rows (in their given order). Everything is seeded by (cycle id, eval run id) through
sha256, so a re-run of the same cycle writes the same rows. Texts never repeat an existing text or
each other (normalized); a row whose text cannot be made new within a bounded number of draws is
skipped and counted.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kotone_pipeline.domain.data.dims import DIMS, NEUTRAL_VALUE, clamp, round_half_up
from kotone_pipeline.domain.data.schemas import EvalRow, FailureExample, Pair, Vector, normalize_text
from kotone_pipeline.domain.loop.hard_dims import validate_dims
from kotone_pipeline.domain.requests.composer import ComposedRequest, Composer
from kotone_pipeline.domain.requests.lexicon import default_lexicon

MIN_DESIRED = 12
ADD_RATIO_RANGE = (0.05, 0.5)
REPLAY_RATIO_RANGE = (0.0, 0.5)
JITTER = 1
PUSH_RANGE = (1, 3)
MAX_TEXT_DRAWS = 25


def _clamp_ratio(value: float, bounds: tuple[float, float], name: str) -> float:
    if value != value:  # NaN
        raise ValueError(f"{name} must be a number, got NaN")
    return min(max(float(value), bounds[0]), bounds[1])


def plan_counts(n_train_base: int, add_ratio: float = 0.2, replay_ratio: float = 0.15) -> tuple[int, int]:
    """(desired generated rows, replay rows on top of them).

    desired = max(12, round_half_up(n x add_ratio)) with add_ratio clamped to [0.05, 0.5];
    replay = min(desired, round_half_up(desired x replay_ratio)) with replay_ratio clamped to [0, 0.5]."""
    if n_train_base < 0:
        raise ValueError(f"n_train_base must be >= 0, got {n_train_base}")
    add = _clamp_ratio(add_ratio, ADD_RATIO_RANGE, "add_ratio")
    rep = _clamp_ratio(replay_ratio, REPLAY_RATIO_RANGE, "replay_ratio")
    desired = max(MIN_DESIRED, round_half_up(n_train_base * add))
    return desired, min(desired, round_half_up(desired * rep))


def augment_seed(cycle_id: str, eval_run_id: str) -> int:
    """A stable seed from (cycle id, eval run id); Python's hash() is salted per process."""
    digest = hashlib.sha256(f"kotone-augment\x1f{cycle_id}\x1f{eval_run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def push_vector(values: Sequence[int], focus_idx: Sequence[int], rng: random.Random) -> tuple[int, ...]:
    """Jitter non-focus dims by [-1, 1]; push focus dims 1–3 steps away from the middle; clamp."""
    out = []
    for i, value in enumerate(values):
        if i in focus_idx:
            step = rng.randint(*PUSH_RANGE)
            out.append(clamp(value + step if value >= NEUTRAL_VALUE else value - step))
        else:
            out.append(clamp(value + rng.randint(-JITTER, JITTER)))
    return tuple(out)


@dataclass(frozen=True)
class _Source:
    pair_id: str
    values: tuple[int, ...]
    kind: str  # "failing_row" | "base_train"
    row_mae: float | None = None


def _sources(failing_rows: Sequence[EvalRow | FailureExample], base_train: Sequence[Pair]) -> list[_Source]:
    if failing_rows:
        # Worst first; the sort is stable, so equal row MAEs keep the caller's order.
        ranked = sorted(failing_rows, key=lambda r: -r.row_mae)
        return [_Source(r.pair_id, r.target.values(), "failing_row", r.row_mae) for r in ranked]
    return [_Source(p.id, p.vector.values(), "base_train") for p in base_train]


@dataclass
class AugmentResult:
    pairs: list[Pair]
    counts: dict[str, Any] = field(default_factory=dict)


def augment(
    failing_rows: Sequence[EvalRow] | Sequence[FailureExample],
    base_train: Sequence[Pair],
    focus_dims: Sequence[str],
    n_train_base: int,
    cycle_id: str,
    eval_run_id: str,
    existing_texts: set[str],
    add_ratio: float = 0.2,
    replay_ratio: float = 0.15,
    composer: Composer | None = None,
) -> AugmentResult:
    """Generated rows pushed along ``focus_dims`` and replay rows, each with a new request text."""
    composer = composer if composer is not None else Composer(default_lexicon())
    focus = validate_dims(focus_dims, "focus dims")
    focus_idx = frozenset(DIMS.index(d) for d in focus)
    desired, n_replay = plan_counts(n_train_base, add_ratio, replay_ratio)
    sources = _sources(failing_rows, base_train)
    counts: dict[str, Any] = {
        "n_train_base": n_train_base,
        "add_ratio": _clamp_ratio(add_ratio, ADD_RATIO_RANGE, "add_ratio"),
        "replay_ratio": _clamp_ratio(replay_ratio, REPLAY_RATIO_RANGE, "replay_ratio"),
        "desired": desired,
        "replay_desired": n_replay,
        "source": sources[0].kind if sources else "none",
        "source_rows": len(sources),
        "focus_dims": focus,
        "augmented": 0,
        "replay": 0,
        "skipped_duplicate_text": 0,
        "text_redraws": 0,
        "target_mae": 0.0,
    }
    if not sources:
        counts["total"] = 0
        return AugmentResult(pairs=[], counts=counts)

    rng = random.Random(augment_seed(cycle_id, eval_run_id))
    taken = {normalize_text(t) for t in existing_texts}
    pairs: list[Pair] = []
    plan = [("augmented", i) for i in range(desired)] + [("replay", i) for i in range(n_replay)]
    for index, (origin, k) in enumerate(plan):
        source = sources[k % len(sources)]
        if origin == "augmented":
            values = push_vector(source.values, focus_idx, rng)
            pushed = [d for d in focus if values[DIMS.index(d)] != source.values[DIMS.index(d)]]
        else:
            values, pushed = source.values, []
        composed = _new_request(values, rng, taken, counts, composer)
        if composed is None:
            counts["skipped_duplicate_text"] += 1
            continue
        text = composed.text
        taken.add(normalize_text(text))
        counts["target_mae"] += sum(abs(a - b) for a, b in zip(composed.vector, values, strict=True)) / len(DIMS)
        pair = Pair.model_validate(
            {
                "group_id": f"aug-{cycle_id}-{index}",
                "source_type": "request_text",
                "text": text,
                "vector": Vector.from_values(composed.vector).as_dict(),
                "origin": origin,
                "cycle": cycle_id,
                "parent_id": source.pair_id,
                "meta": {
                    "source": source.kind,
                    "source_pair_id": source.pair_id,
                    "source_vector": dict(zip(DIMS, source.values, strict=True)),
                    "source_row_mae": source.row_mae,
                    "focus_dims": focus if origin == "augmented" else [],
                    "pushed_dims": pushed,
                    "eval_run_id": eval_run_id,
                    "target_vector": dict(zip(DIMS, values, strict=True)),
                    **composed.meta(),
                },
            }
        )
        pairs.append(pair)
        counts[origin] += 1
    counts["total"] = len(pairs)
    counts["target_mae"] = round(counts["target_mae"] / len(pairs), 4) if pairs else 0.0
    return AugmentResult(pairs=pairs, counts=counts)


def _new_request(
    values: tuple[int, ...], rng: random.Random, taken: set[str], counts: dict[str, Any], composer: Composer
) -> ComposedRequest | None:
    """A request aimed at ``values`` whose text is not taken and passes the quality checks, or None."""
    for attempt in range(MAX_TEXT_DRAWS):
        composed = composer.compose_for(values, rng)
        if composed is not None and normalize_text(composed.text) not in taken:
            counts["text_redraws"] += attempt
            return composed
    counts["text_redraws"] += MAX_TEXT_DRAWS
    return None
