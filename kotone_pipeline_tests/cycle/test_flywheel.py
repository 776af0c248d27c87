"""Two cycles that learn from served requests people reviewed: cuts, routing, leak-free splits, the field set.

The project's dev set (requests people wrote, with their labels) is the traffic: its first 120 rows
are logged before cycle c1 and 60 of them reviewed; 30 more are logged and reviewed before c2.
"""

from __future__ import annotations

import pytest

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import (
    PromotionDecisionDoc,
    ReviewedRequestsDoc,
    ServedRequestsDoc,
    SplitDatasetDoc,
    ValidationSnapshotDoc,
)
from kotone_pipeline.cycle.flywheel import reviewed_rows
from kotone_pipeline.cycle.plain_runner import run_cycle_plain
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import read_models
from kotone_pipeline.domain.data.paths import data_dir
from kotone_pipeline.domain.data.schemas import Pair, normalize_text
from kotone_pipeline.domain.loop.served import route
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.local_datasets import LocalDatasetStore
from kotone_pipeline.services.local_jobs import LocalJobBackend
from kotone_pipeline.services.request_log import RequestLog, new_request_id

pytestmark = pytest.mark.slow
CONFIG = LoopConfig(campaign_size=1, field_min_rows=10)


def _log(log: RequestLog, pairs: list[Pair]) -> list[str]:
    ids = [new_request_id() for _ in pairs]
    log.append(
        [
            {
                "request_id": request_id,
                "text": pair.text,
                "source_type": pair.source_type,
                "model_id": "baseline",
                "prediction": dict.fromkeys(DIMS, 5),
                "latency_ms": 2.0,
            }
            for request_id, pair in zip(ids, pairs, strict=True)
        ]
    )
    return ids


def _review(log: RequestLog, ids: list[str], pairs: list[Pair]) -> None:
    for request_id, pair in zip(ids, pairs, strict=True):
        log.add_review(request_id, "dev-set", "label", pair.vector.model_dump())


def _cycle(artifacts: CycleArtifacts, cycle_id: str, earlier: list[str]):
    return run_cycle_plain(
        artifacts,
        LocalJobBackend(artifacts.jobs_dir),
        LocalDatasetStore(artifacts.datasets_dir),
        ChampionRegistry(artifacts.registry_dir),
        CONFIG,
        cycle_id,
        earlier_cycles=earlier,
        poll_interval_s=0.2,
        timeout_s=300,
    )


@pytest.fixture(scope="module")
def flywheel(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("flywheel")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KOTONE_HOME", str(home))
        mp.setenv("KOTONE_WANDB_MODE", "disabled")
        artifacts = CycleArtifacts(home)
        log = RequestLog(home)
        dev = read_models(data_dir() / "dev" / "human_dev.jsonl", Pair).rows
        first = _log(log, dev[:120])
        _review(log, first[:60], dev[:60])
        log.add_review(first[60], "dev-set", "junk")
        log.add_review(first[61], "dev-set", "skip")
        _cycle(artifacts, "c1", [])
        second = _log(log, dev[120:150])
        _review(log, second, dev[120:150])
        _cycle(artifacts, "c2", ["c1"])
        yield artifacts, dev


def test_each_cycle_cuts_the_log_where_the_last_one_stopped(flywheel) -> None:
    artifacts, _ = flywheel
    c1 = artifacts.read("c1", ServedRequestsDoc)
    c2 = artifacts.read("c2", ServedRequestsDoc)
    assert (c1.after_seq, c1.logged) == (0, 120)
    assert (c2.after_seq, c2.upto_seq, c2.logged) == (c1.upto_seq, c1.upto_seq + 30, 30)
    assert c1.by_lang.get("en", 0) > 0


def test_reviews_are_routed_to_one_side_each_and_counted(flywheel) -> None:
    artifacts, _ = flywheel
    c1 = artifacts.read("c1", ReviewedRequestsDoc)
    assert (c1.reviews, c1.labelled, c1.junk, c1.skipped) == (62, 60, 1, 1)
    assert c1.to_training + c1.to_field == 60 and c1.to_field > 0 and c1.to_training > 0
    training = reviewed_rows(artifacts, ["c1", "c2"], "training")
    field = reviewed_rows(artifacts, ["c1", "c2"], "field")
    assert not {p.id for p in training} & {p.id for p in field}
    for pair in [*training, *field]:
        assert route(pair.text, CONFIG.field_share) == pair.meta["side"]
        assert pair.origin == "reviewed" and pair.meta["reviewers"] == ["dev-set"]
    assert artifacts.read("c2", ReviewedRequestsDoc).field_total == len(field)


def test_the_split_trains_on_the_training_side_and_never_on_the_field_set(flywheel) -> None:
    artifacts, _ = flywheel
    doc = artifacts.read("c2", SplitDatasetDoc)
    splits = LocalDatasetStore(artifacts.datasets_dir).load(doc.dataset)
    trained = [p for name in ("train", "validation", "test") for p in splits[name]]
    field_texts = {normalize_text(p.text) for p in splits["field"]}
    assert field_texts and not field_texts & {normalize_text(p.text) for p in trained}
    reviewed_in_split = {p.id for p in trained if p.origin == "reviewed"}
    assert reviewed_in_split == {p.id for p in reviewed_rows(artifacts, ["c1", "c2"], "training")}
    assert len(splits["field"]) == len(reviewed_rows(artifacts, ["c1", "c2"], "field"))


def test_the_field_set_scores_every_run_and_decides_once_large_enough(flywheel) -> None:
    artifacts, _ = flywheel
    for cycle in ("c1", "c2"):
        snapshot = artifacts.read(cycle, ValidationSnapshotDoc)
        best = snapshot.best
        assert best is not None and best.field is not None
        decision = artifacts.read(cycle, PromotionDecisionDoc).decision
        assert decision.field_rows == best.field.rows >= CONFIG.field_min_rows
        assert decision.primary == "field"
        assert any(r.startswith(("pass: field-set vector_mae", "FAIL: field-set vector_mae")) for r in decision.reasons)
        assert any("holdout guard" in r for r in decision.reasons)


def test_new_requests_are_written_and_labelled_by_the_lexicon_in_effect(flywheel) -> None:
    from kotone_pipeline.cycle.documents import AugmentedPairsDoc
    from kotone_pipeline.services.lexicon_store import LexiconStore

    artifacts, _ = flywheel
    version = LexiconStore(artifacts.home).current()[1]
    assert artifacts.read("c2", AugmentedPairsDoc).lexicon_version == version
    assert {p.meta.get("lexicon") for p in artifacts.read_pairs("c2", "augmented_pairs")} == {version}
