"""Cycle documents for tests: the JSON files as written, and small valid documents to start from."""

from __future__ import annotations

import json
from typing import Any

from kotone_pipeline.cycle.documents import SplitDatasetDoc, SubmittedRun, TrainingSubmissionDoc
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import write_json
from kotone_pipeline.domain.data.schemas import HyperParamDecision, SplitStats
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetRef


def read_json(arts: CycleArtifacts, cycle_id: str, name: str) -> dict[str, Any]:
    """A cycle document's file as written (tests of the on-disk format read it this way)."""
    return json.loads(arts.path(cycle_id, f"{name}.json").read_text(encoding="utf-8"))


def write_raw(arts: CycleArtifacts, cycle_id: str, name: str, doc: dict[str, Any]) -> None:
    """A document file with any content (a stage marker, or a corrupt document)."""
    write_json(arts.path(cycle_id, f"{name}.json"), doc)


def summary(model_id: str, mae: float, dataset: str = "holdout") -> dict[str, Any]:
    return {
        "model_id": model_id, "dataset": dataset, "rows": 10, "vector_mae": mae, "mae_raw": mae * 10,
        "mse_norm": 0.1, "per_dim_mae": dict.fromkeys(DIMS, mae), "per_dim_r2": dict.fromkeys(DIMS, 0.0),
        "mean_r2": 0.0, "exact_match_rate": 0.1, "within_one_rate": 0.5, "json_valid_rate": 1.0,
        "p50_latency_ms": 1.0, "p95_latency_ms": 2.0,
    }  # fmt: skip


def submission(cycle_id: str, job_ids: list[str], uri: str = "/nowhere") -> TrainingSubmissionDoc:
    """A local submission of one run per job id (r0, r1, ...)."""
    return TrainingSubmissionDoc(
        cycle_id=cycle_id,
        trainer="local",
        backend="local",
        dataset=DatasetRef(store="local", name="kotone", version="v1", uri=uri, data_hash="h"),
        hparams_decision=HyperParamDecision(trainer="local", current={}, next={}, patch={}, reasons=[]),
        runs=[
            SubmittedRun(run_id=f"r{i}", job_id=job_id, stage="RUNNING", hparams={}, timeout_s=1800)
            for i, job_id in enumerate(job_ids)
        ],
    )


def split_doc(cycle_id: str, dataset: DatasetRef, rows: dict[str, int] | None = None) -> SplitDatasetDoc:
    """A split document for a published version (its statistics empty)."""
    stats = SplitStats(
        counts={}, rows={}, groups={}, dim_stats={}, data_hash=dataset.data_hash, seed=1, ratios=(0.8, 0.1, 0.1)
    )
    return SplitDatasetDoc(cycle_id=cycle_id, dataset=dataset, stats=stats, rows=rows or {})
