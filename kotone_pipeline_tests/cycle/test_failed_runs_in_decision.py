"""A run that died (killed, out of memory, timed out) is named in the decision log, not only in the snapshot."""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.cycle import steps
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry


def summary(model_id: str, mae: float) -> dict:
    return {
        "model_id": model_id, "dataset": "holdout", "rows": 10, "vector_mae": mae, "mae_raw": mae * 10,
        "mse_norm": 0.1, "per_dim_mae": dict.fromkeys(DIMS, mae), "per_dim_r2": dict.fromkeys(DIMS, 0.0),
        "mean_r2": 0.0, "exact_match_rate": 0.1, "within_one_rate": 0.5, "json_valid_rate": 1.0,
        "p50_latency_ms": 1.0, "p95_latency_ms": 2.0,
    }  # fmt: skip


def test_a_killed_run_is_named_in_the_decision_reasons(tmp_path: Path) -> None:
    arts = CycleArtifacts(tmp_path)
    dead = "the job process (pid 4242) is gone without recording an exit status; last log lines:\nepoch 3"
    arts.write_doc(
        "c1", "eval_summary", {"champion": None, "summaries": {"baseline-constant": {"holdout": summary("b", 2.0)}}}
    )
    arts.write_doc(
        "c1",
        "validation_snapshot",
        {
            "best_run_id": "r0",
            "runs": [
                {"run_id": "r0", "job_id": "c1--r0", "stage": "COMPLETED", "message": None,
                 "holdout": summary("c1/r0", 1.0), "model_uri": "/m/r0"},
                {"run_id": "r1", "job_id": "c1--r1", "stage": "ERROR", "message": dead},
            ],
        },
    )  # fmt: skip
    registry = ChampionRegistry(arts.registry_dir)

    decision = steps.step_promotion_decision(arts, registry, LoopConfig(), "c1")

    assert "run r1 (job c1--r1) ended ERROR: the job process (pid 4242) is gone" in "\n".join(decision.reasons)
    assert decision.promote and registry.current().model_id == "c1/r0"  # the surviving run still counts
    assert any("ended ERROR" in r for r in arts.read_doc("c1", "promotion_decision")["decision"]["reasons"])
