"""Dataset store interface: each cycle's split is published as an immutable, content-hashed version."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kotone_pipeline.domain.data.schemas import Pair

SPLIT_FILES = {
    "train": "train.jsonl",
    "validation": "validation.jsonl",
    "test": "test.jsonl",
    "holdout": "holdout.jsonl",
    # Frozen eval sets travel with every version so a remote run predicts them too; never trained on.
    "probe": "probe.jsonl",
    # The hand-written human set travels too, so every run is scored on requests people wrote.
    "human": "human.jsonl",
    # The field set: reviewed requests people sent the served champion (empty until there are some).
    "field": "field.jsonl",
}
EVAL_SPLITS = ("holdout", "probe", "human", "field")
# Held by a version only when it has rows: a version without reviews is the same version as before the
# field set existed (same files, same content hash).
OPTIONAL_SPLITS = frozenset({"field"})


def published_splits(splits: Mapping[str, object]) -> list[str]:
    """The splits a version holds, in ``SPLIT_FILES`` order: every required one, an optional one with rows."""
    return [s for s in SPLIT_FILES if s not in OPTIONAL_SPLITS or splits.get(s)]


def check_split_names(splits: Mapping[str, object]) -> None:
    """A published version holds ``SPLIT_FILES`` (the optional ones may be left out); say which are missing
    or unknown."""
    missing = [split for split in SPLIT_FILES if split not in splits and split not in OPTIONAL_SPLITS]
    unknown = sorted(set(splits) - set(SPLIT_FILES))
    if missing or unknown:
        raise ValueError(
            f"publish needs exactly the splits {', '.join(SPLIT_FILES)}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )


class DatasetRef(BaseModel):
    store: str  # "local" | "hf"
    name: str  # dataset name / repo id
    version: str  # content hash (local) or commit sha (hf): consumers always pin it
    uri: str  # directory path (local) or https URL of the pinned revision (hf)
    data_hash: str


class DatasetStore(ABC):
    name: str = "abstract"

    @abstractmethod
    def publish(self, cycle_id: str, splits: dict[str, list[Pair]], card: dict[str, Any]) -> DatasetRef:
        """Publish splits (train, validation, test, holdout); idempotent for identical content."""

    @abstractmethod
    def load(self, ref: DatasetRef) -> dict[str, list[Pair]]:
        """Load exactly the pinned version: every split it holds (an empty optional split is not held)."""

    @abstractmethod
    def materialize_local(self, ref: DatasetRef, dest: Path) -> Path:
        """A local directory with ``SPLIT_FILES`` for this version (download when remote)."""
