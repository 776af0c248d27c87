"""Training-job backend interface: one local and one remote (HF Jobs) implementation."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from kotone_pipeline.services.datasets import DatasetRef

TERMINAL_STAGES = frozenset({"COMPLETED", "ERROR", "CANCELED", "DELETED"})
CYCLE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RUN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")


class InvalidIdError(ValueError):
    pass


def validate_cycle_id(cycle_id: str) -> str:
    if not isinstance(cycle_id, str) or not CYCLE_ID_PATTERN.fullmatch(cycle_id):
        raise InvalidIdError(
            f"invalid cycle id {cycle_id!r}: use 1-63 chars of a-z, 0-9, '_' or '-', starting with a letter or digit"
        )
    return cycle_id


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise InvalidIdError(f"invalid run id {run_id!r}: use 1-31 chars of a-z, 0-9, '_' or '-'")
    return run_id


def is_terminal(stage: str) -> bool:
    """Unknown stages (the HF library also meets UPDATING) are treated as still running."""
    return stage.upper() in TERMINAL_STAGES


class JobSpec(BaseModel):
    """Everything needed to start one training run of a cycle. Contains no secrets."""

    cycle_id: str
    run_id: str
    trainer: Literal["local", "lora"] = "local"
    hparams: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetRef
    timeout_s: int = 1800
    env: dict[str, str] = Field(default_factory=dict)  # non-secret settings only
    max_steps: int | None = None  # smoke runs: stop training early
    max_train_rows: int | None = None  # smoke runs: train on the first N pairs
    max_predict_rows: int | None = None  # smoke runs: predict the first N pairs of each split

    def labels(self, project: str = "kotone") -> dict[str, str]:
        return {"kotone-project": project, "kotone-cycle": self.cycle_id, "kotone-run": self.run_id}


class JobState(BaseModel):
    job_id: str
    cycle_id: str
    run_id: str
    backend: str
    stage: str
    message: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    running_s: float | None = None
    cost_usd: float | None = None
    url: str | None = None
    output_uri: str | None = None  # directory (local) or repo@revision (HF) holding the run's outputs
    adopted: bool = False  # True when submit() found an existing job instead of creating one
    attempt: int = 1  # which job of its run this is (a run whose job hit its timeout is submitted again)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.stage)


class JobBackendError(RuntimeError):
    """A backend call failed; ``transient`` says whether a later retry may succeed."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class JobBackend(ABC):
    name: str = "abstract"

    @abstractmethod
    def submit(self, spec: JobSpec) -> JobState:
        """Start the run, or adopt the job that already exists for (cycle, run). Never two jobs per run."""

    @abstractmethod
    def find(self, cycle_id: str, run_id: str) -> JobState | None:
        """The job of this run, if one was ever submitted."""

    @abstractmethod
    def statuses(self, job_ids: list[str]) -> dict[str, JobState]:
        """Current state of many jobs at once (one list call for remote backends)."""

    def resubmits(self, state: JobState) -> bool:
        """Whether this ended job's run is to be submitted again (``submit`` then creates its next attempt)."""
        return False

    def prepare_cycle(self, cycle_id: str) -> dict[str, Any]:
        """Once per cycle, before its submissions (HF: refresh prices); what to record with them."""
        return {}

    def job_env(self, concurrent_jobs: int) -> dict[str, str]:
        """Environment to add to each of ``concurrent_jobs`` jobs submitted together (local: thread limits)."""
        return {}

    @abstractmethod
    def cancel(self, job_id: str) -> None: ...

    @abstractmethod
    def logs_tail(self, job_id: str, lines: int = 50) -> str: ...

    @abstractmethod
    def fetch_outputs(self, state: JobState, dest: Path) -> Path:
        """Make the run's output files (predictions_*.jsonl, metrics.json, run.json) available locally."""
