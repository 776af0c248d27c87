"""A run that died (killed, out of memory, timed out) is named in the decision log, not only in the snapshot."""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.cycle import promotion
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import EvalSummaryDoc, ValidationSnapshotDoc
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline_tests.documents import read_json, summary


def test_a_killed_run_is_named_in_the_decision_reasons(tmp_path: Path) -> None:
    arts = CycleArtifacts(tmp_path)
    dead = "the job process (pid 4242) is gone without recording an exit status; last log lines:\nepoch 3"
    summaries = {"baseline-constant": {"holdout": summary("b", 2.0)}}
    arts.write(
        "c1",
        EvalSummaryDoc(cycle_id="c1", eval_id="e", current_model="baseline-constant", current_model_id="b",
                       summaries=summaries),
    )  # fmt: skip
    arts.write(
        "c1",
        ValidationSnapshotDoc.model_validate(
            {
                "cycle_id": "c1",
                "best_run_id": "r0",
                "completed": 1,
                "failed": 1,
                "runs": [
                    {"run_id": "r0", "job_id": "c1--r0", "stage": "COMPLETED", "message": None,
                     "validation": summary("c1/r0", 1.0, "validation"), "holdout": summary("c1/r0", 1.0),
                     "model_uri": "/m/r0"},
                    {"run_id": "r1", "job_id": "c1--r1", "stage": "ERROR", "message": dead},
                ],
            }
        ),
    )  # fmt: skip
    registry = ChampionRegistry(arts.registry_dir)

    decision = promotion.step_promotion_decision(arts, registry, LoopConfig(), "c1").decision

    assert "run r1 (job c1--r1) ended ERROR: the job process (pid 4242) is gone" in "\n".join(decision.reasons)
    assert decision.promote and registry.current().model_id == "c1/r0"  # the surviving run still counts
    assert any("ended ERROR" in r for r in read_json(arts, "c1", "promotion_decision")["decision"]["reasons"])
