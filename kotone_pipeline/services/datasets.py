"""Dataset store interface: each cycle's split is published as an immutable, content-hashed version."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kotone_pipeline.domain.schemas import Pair

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
OPTIONAL_SPLITS = frozenset({"field"})  # may be empty in a published version


def check_split_names(splits: Mapping[str, object]) -> None:
    """A published version holds exactly ``SPLIT_FILES``; say which are missing or unknown."""
    missing = [split for split in SPLIT_FILES if split not in splits]
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
        """Load exactly the pinned version."""

    @abstractmethod
    def materialize_local(self, ref: DatasetRef, dest: Path) -> Path:
        """A local directory with ``SPLIT_FILES`` for this version (download when remote)."""
