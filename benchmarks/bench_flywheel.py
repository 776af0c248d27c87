"""What one cycle learns from served requests people reviewed (issue 19's ``flywheel_gain``).

The project's dev set (150 requests people wrote, with their labels) is the app's traffic. A first cycle
makes a champion from the teacher's data alone. Then 80 of the dev set's requests (a stable choice by
group) are logged as served and reviewed with their labels, through the same request log ``kotone
serve`` and ``kotone review`` write; one more cycle runs (``run_cycle_plain``, the steps the assets
call). Scored: the dev set's *other* 70 requests (by the same writers, never reviewed), before (the
first champion) and after (the second cycle's candidate, and the champion after its gate). The
gate's verdict and any failing guard are printed too.

Each figure comes from one pair of cycles (two training runs each): the cycles themselves are the
work measured, so ``--repeats`` does not repeat them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Row
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import read_models
from kotone_pipeline.domain.data.paths import data_dir
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.model.predictor import PredictInput

REVIEWED = 80


def _split(rows: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    """80 rows to review, the rest to score; whole groups on one side (sha1 order of group_id)."""
    groups = sorted({p.group_id for p in rows}, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    chosen: set[str] = set()
    count = 0
    for group in groups:
        size = sum(p.group_id == group for p in rows)
        if count + size > REVIEWED:
            continue
        chosen.add(group)
        count += size
    return [p for p in rows if p.group_id in chosen], [p for p in rows if p.group_id not in chosen]


def _mae(model_uri: str, pairs: list[Pair]) -> float:
    from kotone_pipeline.cycle.champion_eval import load_predictor

    model = load_predictor(model_uri)
    predicted = model.predict_values([PredictInput(p.text, p.source_type) for p in pairs])  # type: ignore[attr-defined]
    return float(np.abs(predicted - np.array([p.vector.values() for p in pairs])).mean())


def run(repeats: int) -> dict[str, float]:
    from kotone_pipeline.cycle.config import LoopConfig
    from kotone_pipeline.cycle.documents import (
        EvalSummaryDoc,
        PromotionDecisionDoc,
        ReviewedRequestsDoc,
        ValidationSnapshotDoc,
    )
    from kotone_pipeline.cycle.plain_runner import run_cycle_plain
    from kotone_pipeline.domain.loop.gate import decide_promotion
    from kotone_pipeline.services.artifacts import CycleArtifacts
    from kotone_pipeline.services.champion import ChampionRegistry
    from kotone_pipeline.services.local_datasets import LocalDatasetStore
    from kotone_pipeline.services.local_jobs import LocalJobBackend
    from kotone_pipeline.services.request_log import RequestLog, new_request_id

    dev = read_models(data_dir() / "dev" / "human_dev.jsonl", Pair).rows
    reviewed, scored = _split(dev)
    previous = os.environ.get("KOTONE_HOME")
    with tempfile.TemporaryDirectory(prefix="kotone-bench-flywheel-") as tmp:
        home = Path(tmp)
        os.environ["KOTONE_HOME"] = str(home)
        try:
            artifacts = CycleArtifacts(home)
            registry = ChampionRegistry(artifacts.registry_dir)
            config = LoopConfig(campaign_size=1)

            def cycle(cycle_id: str, earlier: list[str]) -> float:
                started = time.perf_counter()
                run_cycle_plain(
                    artifacts,
                    LocalJobBackend(artifacts.jobs_dir),
                    LocalDatasetStore(artifacts.datasets_dir),
                    registry,
                    config,
                    cycle_id,
                    earlier_cycles=earlier,
                )
                return time.perf_counter() - started

            first_s = cycle("c1", [])
            champion = registry.current()
            assert champion is not None, "the first cycle promoted nothing"
            log = RequestLog(home)
            ids = [new_request_id() for _ in reviewed]
            log.append(
                [
                    {"request_id": i, "text": p.text, "source_type": p.source_type, "model_id": champion.model_id,
                     "prediction": dict.fromkeys(DIMS, 5), "latency_ms": 1.0}
                    for i, p in zip(ids, reviewed, strict=True)
                ]
            )  # fmt: skip
            for request_id, pair in zip(ids, reviewed, strict=True):
                log.add_review(request_id, "dev-set labels", "label", pair.vector.model_dump())
            second_s = cycle("c2", ["c1"])
            best = artifacts.read("c2", ValidationSnapshotDoc).best
            decision = artifacts.read("c2", PromotionDecisionDoc).decision
            after = registry.current()
            doc = artifacts.read("c2", ReviewedRequestsDoc)
            results = {
                "flywheel_reviewed": float(len(reviewed)),
                "flywheel_to_training": float(doc.to_training),
                "flywheel_to_field": float(doc.to_field),
                "flywheel_scored_rows": float(len(scored)),
                "flywheel_other_mae_before": _mae(champion.model_uri, scored),
                "flywheel_other_mae_candidate": _mae(best.model_uri, scored)
                if best and best.model_uri
                else float("nan"),
                "flywheel_other_mae_after": _mae(after.model_uri, scored) if after else float("nan"),
                "flywheel_promoted": float(decision.promote),
                "flywheel_failed_checks": float(sum(r.startswith("FAIL") for r in decision.reasons)),
                "flywheel_cycle_s": second_s,
                "flywheel_first_cycle_s": first_s,
            }
            for reason in decision.reasons:
                print(f"  c2 gate: {reason}")
            # The same candidate and references under a field set that decides from its size (what the gate
            # says once KOTONE_FIELD_MIN_ROWS is at most the field set's rows).
            eval_doc = artifacts.read("c2", EvalSummaryDoc)
            summaries, champion_id = eval_doc.summaries, champion.model_id
            thresholds = config.gate_thresholds().model_copy(update={"field_min_rows": doc.field_total})
            field_rule = decide_promotion(
                candidate_run_id="c2/r0",
                candidate=best.holdout if best else None,
                champion_id=champion_id,
                champion=summaries["champion"]["holdout"],
                baselines={"baseline-constant": summaries["baseline-constant"]["holdout"]},
                thresholds=thresholds,
                candidate_human=best.human if best else None,
                reference_human={champion_id: summaries["champion"]["human"]},
                candidate_field=best.field if best else None,
                reference_field={champion_id: summaries["champion"]["field"]}
                if "field" in summaries["champion"]
                else {},
            )
            for reason in field_rule.reasons:
                print(f"  c2 gate if the field set decided: {reason}")
            results["flywheel_promoted_if_field_decides"] = float(field_rule.promote)
            results["flywheel_failed_checks_if_field_decides"] = float(
                sum(r.startswith("FAIL") for r in field_rule.reasons)
            )
            return results
        finally:
            if previous is None:
                os.environ.pop("KOTONE_HOME", None)
            else:
                os.environ["KOTONE_HOME"] = previous


def rows(results: dict[str, float], repeats: int) -> list[Row]:
    before = results["flywheel_other_mae_before"]
    return [
        Row("reviewed requests (dev set, by group) -> training side / field set", results["flywheel_reviewed"], "", 1),
        Row("  to the training side", results["flywheel_to_training"], "", 1),
        Row("  to the field set", results["flywheel_to_field"], "", 1),
        Row("dev set's other requests: MAE of the first champion", before, "", 1),
        Row(
            "  MAE of the next cycle's candidate",
            results["flywheel_other_mae_candidate"],
            "",
            1,
            results["flywheel_other_mae_candidate"] / before,
            "target <= 0.90x",
        ),
        Row(
            "  MAE of the champion after the gate",
            results["flywheel_other_mae_after"],
            "",
            1,
            results["flywheel_other_mae_after"] / before,
            "vs before",
        ),
        Row("  promoted (1) / kept (0)", results["flywheel_promoted"], "", 1),
        Row("  gate checks failing", results["flywheel_failed_checks"], "", 1),
        Row(
            "  promoted had the field set decided (KOTONE_FIELD_MIN_ROWS <= its rows)",
            results["flywheel_promoted_if_field_decides"],
            "",
            1,
        ),
        Row("    gate checks failing then", results["flywheel_failed_checks_if_field_decides"], "", 1),
        Row("the cycle that learned from the reviews", results["flywheel_cycle_s"], "s", 1),
    ]
