"""What an HF Job's record says and where a run writes: the price table, the labels kotone puts on a job, the
output branch (``OutputTarget``) and the training script's arguments, and readings of a ``JobInfo``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from huggingface_hub import JobInfo

from kotone_pipeline.services.jobs import (
    JobBackendError,
    JobSpec,
)

# USD per hour (hf_api_notes.md, late 2026); ``refresh_prices`` replaces them with list_jobs_hardware's.
FLAVOR_PRICES_USD_PER_HOUR: dict[str, float] = {
    "cpu-basic": 0.01,
    "cpu-upgrade": 0.03,
    "t4-small": 0.40,
    "t4-medium": 0.60,
    "l4x1": 0.80,
    "a10g-small": 1.00,
    "a10g-large": 1.50,
    "l40sx1": 1.80,
    "a100-large": 2.50,
    "h200": 5.00,
}
# Files a training run must leave in its output revision; metrics.json is written by some trainers only.
REQUIRED_OUTPUTS = ("predictions_validation.jsonl", "predictions_holdout.jsonl", "run.json")
OPTIONAL_OUTPUTS = ("metrics.json", "predictions_probe.jsonl")
# The timeout we submitted, recorded on the job itself: the budget counts it for open jobs (the job JSON the
# client parses carries no timeout, and any process that lists the job sees its labels).
TIMEOUT_LABEL = "kotone-timeout-s"
# A run whose job hit its timeout is submitted again (up to ``max_attempts`` jobs), to the same output branch:
# the training script resumes from the checkpoint it pushed there and skips what it already uploaded.
ATTEMPT_LABEL = "kotone-attempt"


@dataclass(frozen=True)
class OutputTarget:
    """Where a run writes its outputs: a model repo branch unique to (cycle, run)."""

    repo_id: str
    revision: str

    @property
    def uri(self) -> str:
        return f"{self.repo_id}@{self.revision}"

    @classmethod
    def parse(cls, uri: str) -> OutputTarget:
        repo_id, sep, revision = uri.rpartition("@")
        if not sep or not repo_id or not revision:
            raise JobBackendError(f"output uri {uri!r} is not <repo>@<revision>", transient=False)
        return cls(repo_id, revision)


def default_script_args(spec: JobSpec, output: OutputTarget) -> list[str]:
    """Arguments of ``kotone_pipeline/training/train_lora.py``, in ``--name=value`` form.

    The ``=`` form matters: ``run_uv_job`` uploads any argument that names an existing local file.
    """
    args = [
        f"--dataset-repo={spec.dataset.name}",
        f"--dataset-revision={spec.dataset.version}",
        f"--output-repo={output.repo_id}",
        f"--output-revision={output.revision}",
    ]
    if spec.hparams:
        args.append(f"--hparams={json.dumps(spec.hparams, sort_keys=True, separators=(',', ':'))}")
    if spec.max_steps:
        args.append(f"--max-steps={spec.max_steps}")
    if spec.max_train_rows:
        args.append(f"--max-train-rows={spec.max_train_rows}")
    if spec.max_predict_rows:
        args.append(f"--max-predict-rows={spec.max_predict_rows}")
    return args


def timed_out(info: JobInfo) -> bool:
    """The job ended because it ran past its timeout (the status message says so)."""
    return str(info.status.stage).upper() == "ERROR" and is_timeout_message(info.status.message)


def is_timeout_message(message: str | None) -> bool:
    text = (message or "").lower()
    return "timeout" in text or "timed out" in text


def attempt_of(info: JobInfo) -> int:
    try:
        return max(1, int((info.labels or {}).get(ATTEMPT_LABEL, 1)))
    except ValueError:
        return 1


def has_labels(info: JobInfo, labels: Mapping[str, str]) -> bool:
    own = info.labels or {}
    return all(own.get(key) == value for key, value in labels.items())


def submitted_timeout_s(info: JobInfo, fallback: int) -> float:
    """The timeout we sent (our label); the backend's maximum for a job without one (not ours, or older)."""
    try:
        return float((info.labels or {})[TIMEOUT_LABEL])
    except (KeyError, ValueError):
        return float(fallback)


def flavor_of(info: JobInfo) -> str | None:
    return str(info.flavor.value if hasattr(info.flavor, "value") else info.flavor) if info.flavor else None


def iso_or_none(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value else None


def running_s(info: JobInfo) -> float | None:
    """Server-side running seconds when given; else from the timestamps (still running: until now)."""
    if info.durations is not None and info.durations.running_secs is not None:
        return float(info.durations.running_secs)
    if info.started_at is None:
        return None
    end = info.finished_at or datetime.now(UTC)
    return max(0.0, (end - info.started_at).total_seconds())


def scheduling_s(info: JobInfo) -> float | None:
    """Seconds spent waiting for hardware, by the server's clock when it says so."""
    if info.durations is not None:
        if info.durations.scheduling_secs is not None:
            return float(info.durations.scheduling_secs)
        if info.durations.total_secs is not None:
            return float(info.durations.total_secs)
    if info.created_at is None:
        return None
    return max(0.0, (datetime.now(UTC) - info.created_at).total_seconds())
