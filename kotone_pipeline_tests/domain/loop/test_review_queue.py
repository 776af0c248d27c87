"""The review queue's ranking: uncertainty and novelty raise a request, near paraphrases are kept apart."""

from __future__ import annotations

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.loop.review_queue import Candidate, NoveltyIndex, rank, score_candidates

TRAIN = ["a calm piano piece for a rainy afternoon", "an upbeat pop song for a summer festival"] * 3
FLAT = dict.fromkeys(DIMS, 5)


def _reader(readings: dict[str, dict[str, int] | None]):  # noqa: ANN202
    return lambda text, source_type: readings.get(text)


def test_disagreement_and_novelty_raise_the_score_and_say_so() -> None:
    index = NoveltyIndex(TRAIN)
    agree = Candidate("a", TRAIN[0], "request_text", FLAT)
    disagree = Candidate("b", TRAIN[1], "request_text", {**FLAT, "energy": 10})
    novel = Candidate("c", "zydeco accordion stomp", "request_text", FLAT)
    unread = Candidate("d", "something", "request_text", FLAT)
    readings = {TRAIN[0]: FLAT, TRAIN[1]: {**FLAT, "energy": 1}, "zydeco accordion stomp": FLAT}
    scored = {s.id: s for s in score_candidates([agree, disagree, novel, unread], _reader(readings), index)}
    assert scored["b"].score > scored["a"].score and scored["c"].score > scored["a"].score
    assert scored["b"].disagreement == 1.5 and "energy 10 vs 1" in scored["b"].reason
    assert scored["a"].novelty < 0.05 and scored["c"].novelty > 0.6
    assert "unlike the training data" in scored["c"].reason and "close to the training data" in scored["a"].reason
    assert scored["d"].disagreement is None and "knows none of its words" in scored["d"].reason


def test_paraphrases_never_come_in_a_row_while_other_requests_wait() -> None:
    index = NoveltyIndex(TRAIN)
    loud = dict.fromkeys(DIMS, 10)
    paraphrases = [
        Candidate(f"p{i}", f"calm piano ballad for a rainy night, take {i}", "request_text", loud) for i in range(6)
    ]
    others = [Candidate(f"o{i}", text, "request_text", FLAT) for i, text in enumerate(["harp", "brass fanfare"])]
    readings = {c.text: FLAT for c in [*paraphrases, *others]}
    ranked = rank(score_candidates([*paraphrases, *others], _reader(readings), index), limit=8)
    ids = [s.id for s in ranked]
    assert sorted(ids) == sorted(c.id for c in [*paraphrases, *others])
    assert ids[0].startswith("p")  # the most uncertain first
    head = [i.startswith("p") for i in ids[:4]]
    assert not any(a and b for a, b in zip(head, head[1:], strict=False))
    assert rank([], 5) == [] and rank(ranked, 0) == []


def test_an_empty_training_set_makes_everything_novel() -> None:
    index = NoveltyIndex([])
    [scored] = score_candidates([Candidate("x", "anything", "request_text", FLAT)], _reader({}), index)
    assert scored.novelty == 1.0
