"""``promotion_decision``: the gate over the validation snapshot, and the champion registry's compare-and-swap."""

from __future__ import annotations

from kotone_pipeline.cycle.champion_eval import GATE_BASELINES
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import (
    EvalSummaryDoc,
    PromotionDecisionDoc,
    ValidationSnapshotDoc,
)
from kotone_pipeline.cycle.tracking import (
    log_cycle,
)
from kotone_pipeline.domain.loop.gate import decide_promotion
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ANY_CHAMPION, Champion, ChampionChangedError, ChampionRegistry
from kotone_pipeline.services.tracker import Tracker


def step_promotion_decision(
    artifacts: CycleArtifacts,
    registry: ChampionRegistry,
    config: LoopConfig,
    cycle_id: str,
    force_reason: str | None = None,
    tracker: Tracker | None = None,
) -> PromotionDecisionDoc:
    """The gate decides; only a promoting decision changes the registry (atomically)."""
    snapshot = artifacts.read(cycle_id, ValidationSnapshotDoc)
    eval_doc = artifacts.read(cycle_id, EvalSummaryDoc)
    summaries = eval_doc.summaries
    best = snapshot.best
    champion = eval_doc.champion
    champion_human = eval_doc.summary("champion", "human") if champion else None
    champion_field = eval_doc.summary("champion", "field") if champion else None
    decision = decide_promotion(
        candidate_run_id=f"{cycle_id}/{best.run_id}" if best else None,
        candidate=best.holdout if best else None,
        champion_id=champion.model_id if champion else None,
        champion=summaries["champion"]["holdout"] if champion else None,
        baselines={n: summaries[n]["holdout"] for n in GATE_BASELINES},
        thresholds=config.gate_thresholds(),
        force_reason=force_reason or None,
        candidate_model_ref=best.model_uri if best else None,
        candidate_human=best.human if best else None,
        reference_human={
            **{n: summaries[n]["human"] for n in GATE_BASELINES if "human" in summaries[n]},
            **({champion.model_id: champion_human} if champion and champion_human else {}),
        },
        candidate_field=best.field if best else None,
        reference_field={
            **{n: summaries[n]["field"] for n in GATE_BASELINES if "field" in summaries[n]},
            **({champion.model_id: champion_field} if champion and champion_field else {}),
        },
    )
    # A run that died (killed, OOM, timed out) is named in the decision log, not only in the snapshot.
    failed = [
        f"run {r.run_id} (job {r.job_id}) ended {r.stage}: " + (r.message or "no message").splitlines()[0]
        for r in snapshot.runs
        if r.stage != "COMPLETED"
    ]
    if failed:
        decision = decision.model_copy(update={"reasons": [*decision.reasons, *failed]})
    decision_id = f"{cycle_id}/{best.run_id}" if best else f"{cycle_id}/none"
    if decision.promote and best is not None and best.holdout is not None and best.model_uri:
        candidate = Champion(
            model_id=decision_id,
            model_uri=best.model_uri,
            cycle_id=cycle_id,
            run_id=best.run_id,
            holdout_mae=best.holdout.vector_mae,
            human_mae=best.human.vector_mae if best.human else None,
            per_dim_mae=best.holdout.per_dim_mae,
            decision_reason="; ".join(decision.reasons),
            forced=decision.forced,
        )
        # The gate compared against the champion this cycle started from; a forced promotion is a
        # person's override and skips that guard.
        expected = ANY_CHAMPION if decision.forced else (champion.model_id if champion else None)
        try:
            registry.promote(candidate, decision_id=decision_id, expected_current=expected)
        except ChampionChangedError as exc:
            decision = decision.model_copy(update={"promote": False, "reasons": [f"keep: {exc}", *decision.reasons]})
    doc = PromotionDecisionDoc(
        cycle_id=cycle_id,
        decision_id=decision_id,
        decision=decision,
        champion_before=champion,
        champion_after=registry.current(),
    )
    if tracker:
        doc.tracking = log_cycle(tracker, artifacts, cycle_id, decision)
    artifacts.write(cycle_id, doc)
    return doc
