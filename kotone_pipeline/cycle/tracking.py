"""What each cycle logs to the experiment tracker (run group = cycle id), and the failure playbook."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kotone_pipeline.cycle.documents import (
    AugmentedPairsDoc,
    HardDimsDoc,
    SplitDatasetDoc,
    TrainingSubmissionDoc,
    ValidationSnapshotDoc,
)
from kotone_pipeline.domain.data.schemas import EvalRow, EvalSummary, GateDecision, Pair
from kotone_pipeline.domain.loop.hard_dims import top_failures
from kotone_pipeline.domain.loop.playbook import build_playbook, playbook_files
from kotone_pipeline.domain.model.predictor import Predictor
from kotone_pipeline.services import tracker as tr
from kotone_pipeline.services import tracker_tables as tt
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.weave_tracing import trace_evaluation
from kotone_pipeline.settings import load_settings

PLAYBOOK_FILE = "failure_playbook.md"
# W&B artifact collections: one version per published split / per promoted model. The names are fixed so
# that the `champion` alias moves along one collection, as the registry's champion does.
DATASET_ARTIFACT = "kotone-dataset"
MODEL_ARTIFACT = "kotone-model"
CHAMPION_ALIAS = "champion"
# A training job's env: the dataset artifact its own W&B run declares as its input (train_lora.py reads it).
DATASET_ARTIFACT_ENV = "KOTONE_DATASET_ARTIFACT"
DATASET_CARD = "card.json"  # written by both dataset stores beside the splits
HF_HUB = "https://huggingface.co"


def model_aliases(cycle_id: str) -> list[str]:
    """The aliases a promoted model's artifact carries: its cycle's and ``champion`` (the report names them)."""
    return [tr.artifact_alias(f"cycle-{cycle_id}"), CHAMPION_ALIAS]


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
                run.log_metrics(tt.eval_metrics(summary), prefix=f"{name}/{dataset}")
        run.log_table(tt.PREDICTIONS_TABLE, tt.predictions_table(probe_rows))
        run.log_table(tt.TOP_FAILURES_TABLE, tt.failures_table(top_failures(probe_rows)))
    except BaseException:
        run.finish(exit_code=1)
        raise
    return run.finish().as_metadata()


RECORDED_REASON = "scored from its run's recorded predictions: the model is not on this machine to trace"


def trace_current_model(
    tracker: tr.Tracker, predictor: Predictor | None, probe: list[Pair], root_dir: Path
) -> dict[str, Any]:
    """Weave traces of the evaluated model's probe predictions (online only; otherwise says why not).
    ``predictor`` is None for a champion scored from recorded predictions."""
    mode = getattr(tracker, "mode", "disabled")
    project = getattr(tracker, "project", "kotone")
    if predictor is None:
        if mode == "online":
            return {"weave_traced": False, "weave_reason": RECORDED_REASON}
        # Offline and disabled return before touching the predictor: the same reason as for any model.
        return trace_evaluation(None, probe, mode, project, root_dir).as_metadata()  # type: ignore[arg-type]
    return trace_evaluation(predictor, probe, mode, project, root_dir).as_metadata()


def log_cycle(tracker: tr.Tracker, artifacts: CycleArtifacts, cycle_id: str, decision: GateDecision) -> dict[str, str]:
    """A ``cycle`` run: hard dims, augmentation, split stats, hyper-parameters, validation, the decision."""
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    hard = artifacts.read(cycle_id, HardDimsDoc).report()
    split_doc = artifacts.read(cycle_id, SplitDatasetDoc)
    augmented = artifacts.read(cycle_id, AugmentedPairsDoc)
    snapshot = artifacts.read(cycle_id, ValidationSnapshotDoc)
    config = {
        "trainer": submission.trainer,
        "hparams": {r.run_id: r.hparams for r in submission.runs},
        "hparams_patch": submission.hparams_decision.patch,
        "dataset_version": split_doc.dataset.version,
    }
    # Logged when the split was published; a split published with tracking off is logged now.
    lineage = dict(split_doc.tracking) or log_dataset(tracker, cycle_id, split_doc)
    dataset_artifact = lineage.get("wandb_dataset_artifact")
    run = tracker.start(cycle_id, name=f"{cycle_id}-cycle", job_type="cycle", config=config)
    try:
        # The cycle run stands for the cycle's training runs (their hyper-parameters and validation
        # metrics are logged here), so it is the one that consumed the dataset version.
        if dataset_artifact:
            run.use_artifact(dataset_artifact, "dataset", like=_dataset_spec_if_present(cycle_id, split_doc))
        run.log_metrics(tt.hard_dims_metrics(hard), prefix="hard_dims")
        run.log_metrics(
            {k: v for k, v in augmented.counts.items() if isinstance(v, int | float)},
            prefix="augmentation",
        )
        run.log_metrics(tt.split_metrics(split_doc.stats), prefix="split")
        for entry in snapshot.runs:
            for dataset, summary in (("validation", entry.validation), ("holdout", entry.holdout)):
                if summary is not None:
                    run.log_metrics(tt.eval_metrics(summary), prefix=f"{entry.run_id}/{dataset}")
        run.log_metrics(tt.gate_metrics(decision), prefix="gate")
        run.log_summary(tt.gate_summary(decision))
        if decision.promote and decision.candidate_model_ref:
            model_artifact = run.log_artifact(
                MODEL_ARTIFACT,
                "model",
                aliases=model_aliases(cycle_id),
                references=model_references(decision.candidate_model_ref),
                metadata={
                    "model_id": decision.candidate_run_id,
                    "model_uri": decision.candidate_model_ref,
                    "cycle_id": cycle_id,
                    "holdout_mae": decision.candidate_holdout_mae,
                    "human_mae": decision.candidate_human_mae,
                    "forced": decision.forced,
                    "dataset_version": split_doc.dataset.version,
                    "dataset_artifact": dataset_artifact,
                },
            )
            if model_artifact:
                lineage["wandb_model_artifact"] = model_artifact
    except BaseException:
        run.finish(exit_code=1)
        raise
    return {**run.finish().as_metadata(), **lineage}


def dataset_references(dataset: Mapping[str, Any]) -> tuple[dict[str, Path], list[str]]:
    """Small files and references for a published split: the card itself, and where the data lives."""
    uri = str(dataset["uri"])
    if dataset.get("store") == "local" or not uri.startswith(("https://", "http://")):
        folder = Path(uri)
        card = folder / DATASET_CARD
        files = {DATASET_CARD: card} if card.is_file() else {}
        return files, [tr.file_reference(folder)] if folder.exists() else []
    # A Hub version: the https URL of the pinned revision (never downloaded; see ArtifactSpec.to_wandb).
    return {}, [uri]


def model_references(model_uri: str) -> list[str]:
    """A local model folder as a file:// reference, a Hub ``repo@sha`` as the https URL of that commit."""
    path = Path(model_uri)
    if path.exists():
        return [tr.file_reference(path)]
    repo, sep, revision = model_uri.rpartition("@")
    if sep and repo and revision:
        endpoint = (load_settings().hf_endpoint or HF_HUB).rstrip("/")
        return [f"{endpoint}/{repo}/tree/{revision}"]
    return []  # gone or unknown: the artifact still records the URI in its metadata


def dataset_artifact_spec(cycle_id: str, split_doc: SplitDatasetDoc) -> tr.ArtifactSpec:
    """The ``dataset`` artifact of a published split, rebuilt the same from its doc wherever it is needed."""
    facts = split_doc.dataset.model_dump()
    files, references = dataset_references(facts)
    return tr.ArtifactSpec.build(
        DATASET_ARTIFACT,
        "dataset",
        aliases=[tr.artifact_alias(f"cycle-{cycle_id}"), tr.artifact_alias(split_doc.dataset.version)],
        files=files,
        references=references,
        metadata={**facts, "cycle_id": cycle_id, "rows": split_doc.rows},
    )


def log_dataset(tracker: tr.Tracker, cycle_id: str, split_doc: SplitDatasetDoc) -> dict[str, str]:
    """A ``dataset`` run whose output is the cycle's published split as a ``dataset`` artifact.

    Logged when the split is published (``split_dataset``), in its own run, so that W&B's graph reads
    dataset -> training -> model as Dagster's does; returns the artifact name (``wandb_dataset_artifact``)
    and where the run went (``wandb_dataset_*``). The split doc keeps it as its ``tracking``."""
    spec = dataset_artifact_spec(cycle_id, split_doc)
    run = tracker.start(cycle_id, name=f"{cycle_id}-dataset", job_type="dataset", config={"dataset": spec.metadata})
    try:
        artifact = run.log_artifact(
            spec.name,
            spec.type,
            aliases=spec.aliases,
            files=dict(spec.files),
            references=spec.references,
            metadata=spec.metadata,
        )
    except BaseException:
        run.finish(exit_code=1)
        raise
    link = run.finish().as_metadata()
    if not artifact:  # tracking disabled: nothing to link
        return {}
    out = {"wandb_dataset_artifact": artifact}
    for key in ("wandb_mode", "wandb_run_id", "wandb_url", "wandb_run_dir", "wandb_sync_command"):
        if key in link:
            out[key.replace("wandb_", "wandb_dataset_", 1)] = link[key]
    return out


def _dataset_spec_if_present(cycle_id: str, split_doc: SplitDatasetDoc) -> tr.ArtifactSpec | None:
    try:
        return dataset_artifact_spec(cycle_id, split_doc)
    except ValueError:  # the published files are gone: the use is then recorded by name only
        return None


def dataset_artifact_for_jobs(split_doc: SplitDatasetDoc) -> str | None:
    """The dataset artifact a training job's own W&B run declares as its input: only an online one, as a
    job cannot resolve a name that exists only in an offline run on this machine."""
    tracking = split_doc.tracking
    if tracking.get("wandb_dataset_mode") != "online":
        return None
    return tracking.get("wandb_dataset_artifact") or None


def write_failure_playbook(artifacts: CycleArtifacts, cycle_id: str) -> tuple[str, Any]:
    """The playbook from this cycle's probe rows, hard dims, augmentation and hyper-parameter decision."""
    rows = artifacts.read_eval_rows(cycle_id, "eval_rows_probe")
    hard = artifacts.read(cycle_id, HardDimsDoc).report()
    counts = artifacts.read(cycle_id, AugmentedPairsDoc).counts
    decision = artifacts.read(cycle_id, TrainingSubmissionDoc).hparams_decision
    next_steps = {
        "focus_dims": hard.focus,
        "rows_to_add": int(counts.get("augmented", 0)),
        "replay_rows": int(counts.get("replay", 0)),
        "hparam_patch": decision.patch,
        "hparam_reasons": decision.reasons,
    }
    playbook = build_playbook(cycle_id, rows, hard, next_steps)
    for name, text in playbook_files(playbook, PLAYBOOK_FILE).items():
        artifacts.write_text(cycle_id, name, text)
    return artifacts.location(cycle_id, PLAYBOOK_FILE), playbook
