"""The workflow log for 20 cycles: collect from the Dagster instance + cycle documents, render md/html/plots.

The instance is real (SQLite in a temporary DAGSTER_HOME) and holds what a cycle leaves there: a
cycle_job and a validation_job run per cycle materializing the cycle's assets, and the sensor's runless
trained_models report. The assets here only return metadata shaped like the real ones, and the cycle
documents are synthetic but shaped like the real ones, so the figure measures the report, not training.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks import Row, median_seconds
from kotone_pipeline.cycle.documents import STAGE_DOCUMENTS
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.report.render import render_report
from kotone_pipeline.orchestration.report_collection import collect_report
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry

CYCLES = 20
TARGET_S = 3.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)

_cycles = dg.DynamicPartitionsDefinition(name="cycles")


def _stub(name: str, deps: list[str], metadata: dict[str, Any]) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=_cycles, deps=deps)
    def _asset() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=metadata)

    return _asset


_CYCLE_ASSETS = [
    _stub("eval_summary", [], {"current_model": "champion"}),
    _stub("hard_dims", ["eval_summary"], {"source": "eval_rows"}),
    _stub("augmented_pairs", ["hard_dims"], {"dagster/row_count": 973}),
    _stub("split_dataset", ["augmented_pairs"], {"dataset_version": "v"}),
    _stub("training_submission", ["split_dataset"], {"new_jobs": 2, "job_ids": ["x.r0", "x.r1"]}),
    _stub("failure_playbook", ["training_submission"], {"worst_dims": ["energy"]}),
]
_VALIDATION_ASSETS = [
    _stub("validation_snapshot", ["training_submission"], {"best_run": "r0", "completed": 2, "failed": 0}),
    _stub(
        "promotion_decision", ["validation_snapshot"], {"decision": "promote", "candidate": "x/r0", "reference": "b"}
    ),
]
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
_DEFS = dg.Definitions(
    assets=[*_CYCLE_ASSETS, *_VALIDATION_ASSETS],
    jobs=[
        dg.define_asset_job("cycle_job", selection=[a.key for a in _CYCLE_ASSETS]),
        dg.define_asset_job("validation_job", selection=[a.key for a in _VALIDATION_ASSETS]),
    ],
)


def _summary(mae: float) -> dict[str, Any]:
    per_dim = {d: mae + i / 100 for i, d in enumerate(DIMS)}
    return {"model_id": "bench", "dataset": "holdout", "vector_mae": mae, "rows": 400, "per_dim_mae": per_dim,
            "mae_raw": mae, "mse_norm": 0.0, "per_dim_r2": {d: 0.5 for d in DIMS}, "mean_r2": 0.5,
            "exact_match_rate": 0.3, "within_one_rate": 0.8, "json_valid_rate": 1.0, "p50_latency_ms": 1.0,
            "p95_latency_ms": 2.0}  # fmt: skip


_MODELS = {doc.NAME: doc for doc in STAGE_DOCUMENTS}


def _write_docs(artifacts: CycleArtifacts, registry: ChampionRegistry, index: int, cycle_id: str) -> None:
    """One cycle's documents, shaped like cycle/steps.py writes them; every third cycle keeps the champion."""
    champion = registry.current()
    before = champion.model_dump(mode="json") if champion else None
    reference = champion.holdout_mae if champion else 1.2
    candidate = round(0.6 / (1 + index / 10) + (0.05 if index % 3 == 2 else 0.0), 4)
    promote = candidate < reference - 0.005
    at = T0 + timedelta(hours=index)
    dataset = {
        "store": "local",
        "name": "kotone",
        "version": f"v{index:04d}",
        "uri": f"/d/v{index:04d}",
        "data_hash": "h",
    }
    tracking = {
        "wandb_mode": "offline",
        "wandb_run_dir": f"/w/{cycle_id}",
        "wandb_sync_command": f"wandb sync /w/{cycle_id}",
    }
    hparams = {"alpha": 0.3}
    runs = [
        {"run_id": f"r{r}", "job_id": f"{cycle_id}.r{r}", "stage": "RUNNING", "url": None, "adopted": False,
         "created_at": at.isoformat(), "hparams": hparams, "timeout_s": 1800}
        for r in range(2)
    ]  # fmt: skip
    docs = {
        "eval_summary": {"cycle_id": cycle_id, "champion": before, "tracking": tracking, "summaries": {},
                         "eval_id": cycle_id, "current_model": "champion" if before else "baseline-rule",
                         "current_model_id": before["model_id"] if before else "baseline-rule"},
        "hard_dims": {"focus": ["energy", "warmth"], "k": 2, "by_dim": {d: 0.3 for d in DIMS}, "source": "eval_rows",
                      "eval_model_id": before["model_id"] if before else "baseline-rule", "top_failures": []},
        "augmented_pairs": {"cycle_id": cycle_id, "counts": {"total": 973}, "focus": ["energy", "warmth"]},
        "split_dataset": {"cycle_id": cycle_id, "dataset": dataset, "rows": {"train": 5000},
                          "stats": {"counts": {}, "rows": {}, "groups": {}, "dim_stats": {}, "data_hash": "h",
                                    "seed": 1, "ratios": [0.8, 0.1, 0.1]}},
        "training_submission": {"cycle_id": cycle_id, "trainer": "local", "backend": "local", "dataset": dataset,
                                "hparams_decision": {"trainer": "local", "current": hparams, "next": hparams,
                                                     "patch": {"alpha": 0.15}, "reasons": ["L1: underfitting"]},
                                "runs": runs},
    }  # fmt: skip
    snapshot_runs = [
        {**run, "stage": "COMPLETED", "finished_at": (at + timedelta(minutes=1)).isoformat(), "running_s": 55.0 + r,
         "cost_usd": 0.01 * index, "model_uri": f"/m/{cycle_id}/r{r}", "validation": _summary(candidate + 0.03),
         "holdout": _summary(candidate + r / 100), "human": _summary(1.1 + r / 100)}
        for r, run in enumerate(runs)
    ]  # fmt: skip
    docs["validation_snapshot"] = {"cycle_id": cycle_id, "runs": snapshot_runs, "best_run_id": "r0", "completed": 2,
                                   "failed": 0, "total_cost_usd": 0.02 * index}  # fmt: skip
    decision_id = f"{cycle_id}/r0"
    if promote:
        registry.promote(
            Champion(model_id=decision_id, model_uri=f"/m/{cycle_id}/r0", cycle_id=cycle_id, run_id="r0",
                     holdout_mae=candidate, human_mae=1.1, decision_reason="bench"),
            decision_id=decision_id,
        )  # fmt: skip
    after = registry.current()
    docs["promotion_decision"] = {
        "cycle_id": cycle_id,
        "decision_id": decision_id,
        "decision": {"promote": promote, "forced": False, "candidate_run_id": decision_id,
                     "reference_kind": "champion" if before else "baseline",
                     "reference_id": before["model_id"] if before else "baseline-constant",
                     "candidate_holdout_mae": candidate, "reference_holdout_mae": reference,
                     "candidate_human_mae": 1.1, "reference_human_mae": 1.12,
                     "per_dim_delta": {d: candidate - reference for d in DIMS}, "reasons": ["bench"],
                     "thresholds": {"min_improvement": 0.005}},
        "champion_before": before,
        "champion_after": after.model_dump(mode="json") if after else None,
        "tracking": tracking,
    }  # fmt: skip
    for name, doc in docs.items():
        artifacts.write(cycle_id, _MODELS[name].model_validate(doc))


def build_history(home: Path, instance: dg.DagsterInstance, cycles: int = CYCLES) -> CycleArtifacts:
    """``cycles`` cycles in ``instance`` (runs, materializations, sensor reports) and their documents under home."""
    artifacts = CycleArtifacts(home)
    registry = ChampionRegistry(artifacts.registry_dir)
    for index in range(cycles):
        cycle_id = f"bench-{index + 1:03d}"
        instance.add_dynamic_partitions(_cycles.name, [cycle_id])
        _write_docs(artifacts, registry, index, cycle_id)
        _DEFS.resolve_job_def("cycle_job").execute_in_process(
            instance=instance, partition_key=cycle_id, run_config=_QUIET
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "trained_models", partition=cycle_id, metadata={"completed": 2, "failed": 0, "job_ids": ["a", "b"]}
            )
        )
        _DEFS.resolve_job_def("validation_job").execute_in_process(
            instance=instance, partition_key=cycle_id, run_config=_QUIET
        )
    return artifacts


def run(repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
        artifacts = build_history(Path(tmp) / "home", instance)
        registry = ChampionRegistry(artifacts.registry_dir)
        render_report(collect_report(instance, artifacts, registry))  # imports matplotlib once, as a process would

        def build() -> None:
            render_report(collect_report(instance, artifacts, registry))

        total_s = median_seconds(build, repeats)
        collect_s = median_seconds(lambda: collect_report(instance, artifacts, registry), repeats)
        report = collect_report(instance, artifacts, registry)
        render_s = median_seconds(lambda: render_report(report), repeats)
        rendered = render_report(report)
    return {
        "report_build_s": total_s,
        "report_collect_s": collect_s,
        "report_render_s": render_s,
        "report_cycles": float(len(report.cycles)),
        "report_events": float(len(report.events)),
        "report_html_kb": len(rendered.html.encode()) / 1024,
        "report_md_kb": len(rendered.markdown.encode()) / 1024,
    }


def rows(r: dict[str, float], repeats: int) -> list[Row]:
    n = int(r["report_cycles"])
    return [
        Row(f"workflow log, {n} cycles: collect + render md/html/plots", r["report_build_s"], "s", repeats,
            r["report_build_s"] / TARGET_S, f"{TARGET_S:.0f} s target"),
        Row("  collect from the instance and documents", r["report_collect_s"], "s", repeats),
        Row("  render markdown, HTML and 3 plots", r["report_render_s"], "s", repeats),
        Row("  events in the log", r["report_events"], "", 1),
        Row("  self-contained HTML size", r["report_html_kb"], "KiB", 1),
    ]  # fmt: skip
