"""``training_submission``: one job per hyper-parameter variant of the campaign, on the published split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kotone_pipeline.cycle.champion_eval import BASELINE_NAMES
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import (
    EvalSummaryDoc,
    HardDimsDoc,
    JobRecord,
    SmokeLimits,
    SplitDatasetDoc,
    SubmittedRun,
    TrainingSubmissionDoc,
)
from kotone_pipeline.cycle.tracking import (
    DATASET_ARTIFACT_ENV,
    dataset_artifact_for_jobs,
)
from kotone_pipeline.domain.data.jsonl import iter_json_lines
from kotone_pipeline.domain.data.schemas import (
    LocalHyperParams,
    LoraHyperParams,
)
from kotone_pipeline.domain.loop.hparams import (
    LORA_LR_LADDER,
    campaign_variants,
    next_local_hparams,
    next_lora_hparams,
)
from kotone_pipeline.domain.loop.job_timeout import default_job_timeout_s
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion
from kotone_pipeline.services.datasets import SPLIT_FILES, DatasetRef
from kotone_pipeline.services.jobs import JobBackend


def _champion_hparams(artifacts: CycleArtifacts, champion: Champion | None) -> dict[str, Any] | None:
    if champion is None or not champion.cycle_id:
        return None
    try:
        doc = artifacts.read(champion.cycle_id, TrainingSubmissionDoc)
    except FileNotFoundError:
        return None
    run = doc.run(champion.run_id)
    return run.hparams if run else None


def step_training_submission(
    artifacts: CycleArtifacts, backend: JobBackend, config: LoopConfig, cycle_id: str
) -> TrainingSubmissionDoc:
    """Next hyper-parameters from the rules, then one job per campaign run (adopting existing jobs)."""
    split_doc = artifacts.read(cycle_id, SplitDatasetDoc)
    dataset = split_doc.dataset
    if backend.name == "local" and dataset.store != "local":
        raise ValueError(
            f"cycle {cycle_id}: the local job backend trains from a dataset directory, but the split was "
            f"published to the {dataset.store!r} store ({dataset.uri}); use the local dataset store with it"
        )
    eval_doc = artifacts.read(cycle_id, EvalSummaryDoc)
    hard = artifacts.read(cycle_id, HardDimsDoc)
    # The probe set drives the rules; the holdout set is reserved for the promotion gate.
    candidate = eval_doc.summary("champion", "probe")
    baseline = min((eval_doc.summaries[n]["probe"] for n in BASELINE_NAMES), key=lambda s: s.vector_mae)
    current = _champion_hparams(artifacts, eval_doc.champion) or {}
    if config.trainer == "local":
        decision = next_local_hparams(LocalHyperParams(**current), candidate, baseline, hard.focus)
        variants = [
            # KOTONE_MIN_PEOPLE_ROWS: when people's rows train the model's correction part (domain/model/correction.py).
            {**v.model_dump(), "min_people_rows": config.min_people_rows}
            for v in campaign_variants(LocalHyperParams(**decision.next), config.campaign_size)
        ]
    else:
        decision = next_lora_hparams(LoraHyperParams(**current), candidate, baseline, hard.focus)
        variants = [
            {**decision.next, "learning_rate": decision.next["learning_rate"] * factor}
            for factor in LORA_LR_LADDER[: config.campaign_size]
        ]
    _refuse_changed_resubmission(artifacts, cycle_id, dataset, variants)
    dataset_artifact = dataset_artifact_for_jobs(split_doc)
    job_env = {DATASET_ARTIFACT_ENV: dataset_artifact} if dataset_artifact else {}
    job_env.update(backend.job_env(len(variants)))
    smoke = SmokeLimits(
        max_steps=config.job_max_steps,
        max_train_rows=config.job_max_train_rows,
        max_predict_rows=config.job_max_predict_rows,
    )
    doc = TrainingSubmissionDoc(
        cycle_id=cycle_id,
        trainer=config.trainer,
        backend=backend.name,
        dataset=dataset,
        hparams_decision=decision,
        runs=[],
        job_env=job_env,
        smoke=smoke if smoke != SmokeLimits() else None,
    )
    doc.pricing = backend.prepare_cycle(cycle_id) or None
    doc.embeddings = _prepare_local_embeddings(backend, config, dataset, variants)
    for index, hparams in enumerate(variants):
        run = SubmittedRun(
            run_id=f"r{index}",
            hparams=hparams,
            timeout_s=job_timeout_s(config, backend, split_doc.rows, hparams),
            job_id="",
            stage="",
        )
        state = backend.submit(doc.job_spec(run))
        doc.runs.append(run.model_copy(update=JobRecord.of(state).model_dump()))
    artifacts.write(cycle_id, doc)
    return doc


def _prepare_local_embeddings(
    backend: JobBackend, config: LoopConfig, dataset: DatasetRef, variants: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Local jobs on this machine share the embedding cache: fill it once before they start."""
    if backend.name != "local" or config.trainer != "local" or not any(v.get("use_encoder") for v in variants):
        return None
    from kotone_pipeline.domain.model.embedding_cache import prepare_embeddings  # not sklearn: this only embeds

    # The split was written and checked by this cycle's steps: its texts are read as they are, without
    # validating every row again.
    texts = []
    for name in SPLIT_FILES.values():
        path = Path(dataset.uri) / name
        if path.is_file():
            for _, _, row, _ in iter_json_lines(path):  # a bad line is the job's to report, with its number
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    texts.append((str(row.get("source_type")), row["text"]))
    return prepare_embeddings(texts)


def job_timeout_s(config: LoopConfig, backend: JobBackend, rows: dict[str, int], hparams: dict[str, Any]) -> int:
    """KOTONE_JOB_TIMEOUT_S when set; else the local default, or the LoRA formula (domain.job_timeout)."""
    if config.job_timeout_s:
        return config.job_timeout_s
    if config.trainer != "lora":
        return 1800  # the local trainer fits in seconds; this only bounds a hung process
    train_rows = int(rows.get("train", 0))
    if config.job_max_train_rows:
        train_rows = min(train_rows, config.job_max_train_rows)
    cap = config.job_max_predict_rows or 10**9
    predict_rows = sum(min(int(rows.get(split, 0)), cap) for split in ("validation", "holdout", "probe", "human"))
    return default_job_timeout_s(
        getattr(backend, "flavor", "local"),
        train_rows,
        predict_rows,
        hparams,
        max_steps=config.job_max_steps,
        max_timeout_s=int(getattr(backend, "max_timeout_s", 6 * 3600)),
    )


def _refuse_changed_resubmission(
    artifacts: CycleArtifacts, cycle_id: str, dataset: DatasetRef, variants: list[dict[str, Any]]
) -> None:
    """Re-submitting adopts the existing jobs, which only is right when they train the same thing."""
    previous = artifacts.read_if_present(cycle_id, TrainingSubmissionDoc)
    if previous is None:
        return
    changes = []
    if previous.dataset.version != dataset.version:
        changes.append(f"dataset version {previous.dataset.version} -> {dataset.version}")
    for run in previous.runs:
        index = int(run.run_id.removeprefix("r"))
        if index < len(variants) and run.hparams != variants[index]:
            changes.append(f"{run.run_id} hyper-parameters changed")
    if changes:
        raise ValueError(
            f"cycle {cycle_id} already has training jobs for different inputs ({'; '.join(changes)}); "
            "its jobs cannot be re-used — start a new cycle instead"
        )
