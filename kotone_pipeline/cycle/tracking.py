"""What each cycle logs to the experiment tracker (run group = cycle id), and the failure playbook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kotone_pipeline.domain.playbook import build_playbook, write_playbook
from kotone_pipeline.domain.predictor import Predictor
from kotone_pipeline.domain.schemas import EvalRow, EvalSummary, GateDecision, HardDimReport, Pair, SplitStats
from kotone_pipeline.services import tracker as tr
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.weave_tracing import trace_evaluation

PLAYBOOK_FILE = "failure_playbook.md"


def log_eval(
    tracker: tr.Tracker,
    cycle_id: str,
    current_model: str,
    summaries: dict[str, dict[str, EvalSummary]],
    probe_rows: list[EvalRow],
) -> dict[str, str]:
    """An ``eval`` run: metrics of every evaluated model, the current model's rows and top failures."""
    run = tracker.start(cycle_id, name=f"{cycle_id}-eval", job_type="eval", config={"current_model": current_model})
    try:
        for name, by_dataset in summaries.items():
            for dataset, summary in by_dataset.items():
                run.log_metrics(tr.eval_metrics(summary), prefix=f"{name}/{dataset}")
        run.log_table(tr.PREDICTIONS_TABLE, tr.predictions_table(probe_rows))
        run.log_table(tr.TOP_FAILURES_TABLE, tr.failures_table(tr.top_failures(probe_rows)))
    except BaseException:
        run.finish(exit_code=1)
        raise
    return run.finish().as_metadata()


def trace_current_model(tracker: tr.Tracker, predictor: Predictor, probe: list[Pair], root_dir: Path) -> dict[str, Any]:
    """Weave traces of the evaluated model's probe predictions (online only; offline says why not)."""
    mode = getattr(tracker, "mode", "disabled")
    project = getattr(tracker, "project", "kotone")
    return trace_evaluation(predictor, probe, mode, project, root_dir).as_metadata()


def log_cycle(tracker: tr.Tracker, artifacts: CycleArtifacts, cycle_id: str, decision: GateDecision) -> dict[str, str]:
    """A ``cycle`` run: hard dims, augmentation, split stats, hyper-parameters, validation, the decision."""
    submission = artifacts.read_doc(cycle_id, "training_submission")
    hard = HardDimReport.model_validate(artifacts.read_doc(cycle_id, "hard_dims"))
    split_doc = artifacts.read_doc(cycle_id, "split_dataset")
    augmented = artifacts.read_doc(cycle_id, "augmented_pairs")
    snapshot = artifacts.read_doc(cycle_id, "validation_snapshot")
    config = {
        "trainer": submission["trainer"],
        "hparams": {r["run_id"]: r["hparams"] for r in submission["runs"]},
        "hparams_patch": submission["hparams_decision"]["patch"],
        "dataset_version": split_doc["dataset"]["version"],
    }
    run = tracker.start(cycle_id, name=f"{cycle_id}-cycle", job_type="cycle", config=config)
    try:
        run.log_metrics(tr.hard_dims_metrics(hard), prefix="hard_dims")
        run.log_metrics(
            {k: v for k, v in augmented["counts"].items() if isinstance(v, int | float)},
            prefix="augmentation",
        )
        run.log_metrics(tr.split_metrics(SplitStats.model_validate(split_doc["stats"])), prefix="split")
        for entry in snapshot["runs"]:
            for dataset in ("validation", "holdout"):
                if dataset in entry:
                    run.log_metrics(
                        tr.eval_metrics(EvalSummary.model_validate(entry[dataset])),
                        prefix=f"{entry['run_id']}/{dataset}",
                    )
        run.log_metrics(tr.gate_metrics(decision), prefix="gate")
        run.log_summary(tr.gate_summary(decision))
    except BaseException:
        run.finish(exit_code=1)
        raise
    return run.finish().as_metadata()


def write_failure_playbook(artifacts: CycleArtifacts, cycle_id: str) -> tuple[Path, Any]:
    """The playbook from this cycle's probe rows, hard dims, augmentation and hyper-parameter decision."""
    rows = artifacts.read_eval_rows(cycle_id, "eval_rows_probe")
    hard = HardDimReport.model_validate(artifacts.read_doc(cycle_id, "hard_dims"))
    counts = artifacts.read_doc(cycle_id, "augmented_pairs")["counts"]
    decision = artifacts.read_doc(cycle_id, "training_submission")["hparams_decision"]
    next_steps = {
        "focus_dims": hard.focus,
        "rows_to_add": int(counts.get("augmented", 0)),
        "replay_rows": int(counts.get("replay", 0)),
        "hparam_patch": decision["patch"],
        "hparam_reasons": decision["reasons"],
    }
    playbook = build_playbook(cycle_id, rows, hard, next_steps)
    path = artifacts.path(cycle_id, PLAYBOOK_FILE)
    write_playbook(path, playbook)
    return path, playbook
