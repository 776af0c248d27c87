"""Where each cycle's artifacts live under ``$KOTONE_HOME`` (one file per asset, written atomically)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kotone_pipeline.domain.jsonl import read_models, write_json, write_jsonl
from kotone_pipeline.domain.schemas import EvalRow, Pair
from kotone_pipeline.services.jobs import validate_cycle_id


class ArtifactMissingError(FileNotFoundError):
    """An upstream artifact has not been materialized yet."""


class CorruptStateError(ValueError):
    """A state file exists but cannot be read; the message names it and says how to recover."""


class CycleArtifacts:
    """File layout: ``base/`` for unpartitioned data, ``cycles/<id>/`` for one cycle's artifacts."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home).resolve()

    # --- layout -----------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return self.home / "base"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry"

    @property
    def wandb_dir(self) -> Path:
        return self.home / "wandb"

    def cycle_dir(self, cycle_id: str) -> Path:
        return self.home / "cycles" / validate_cycle_id(cycle_id)

    def path(self, cycle_id: str, name: str) -> Path:
        return self.cycle_dir(cycle_id) / name

    def cycles_on_disk(self) -> list[str]:
        root = self.home / "cycles"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    # --- JSON documents -----------------------------------------------------------------------
    def write_doc(self, cycle_id: str, name: str, doc: Any) -> Path:
        target = self.path(cycle_id, f"{name}.json")
        write_json(target, doc)
        return target

    def has_doc(self, cycle_id: str, name: str) -> bool:
        return self.path(cycle_id, f"{name}.json").is_file()

    def read_doc(self, cycle_id: str, name: str) -> dict[str, Any]:
        target = self.path(cycle_id, f"{name}.json")
        if not target.is_file():
            raise ArtifactMissingError(f"{name} for cycle {cycle_id!r} is missing ({target}); materialize it first")
        try:
            doc = json.loads(target.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError included
            doc, reason = None, f"not valid JSON: {exc}"
        else:
            reason = None if isinstance(doc, dict) else f"expected a JSON object, got {type(doc).__name__}"
        if reason is not None:
            raise CorruptStateError(
                f"{target}: corrupt cycle document ({reason}); delete it and re-materialize {name} for cycle "
                f"{cycle_id!r} (in the UI, or re-run the cycle: the finished steps are kept)"
            )
        return doc

    # --- row files ----------------------------------------------------------------------------
    def write_rows(self, cycle_id: str, name: str, rows: list[Any]) -> Path:
        target = self.path(cycle_id, f"{name}.jsonl")
        write_jsonl(target, rows)
        return target

    def read_pairs(self, cycle_id: str, name: str) -> list[Pair]:
        target = self.path(cycle_id, f"{name}.jsonl")
        if not target.is_file():
            raise ArtifactMissingError(f"{name} for cycle {cycle_id!r} is missing ({target})")
        return read_models(target, Pair).rows

    def read_eval_rows(self, cycle_id: str, name: str) -> list[EvalRow]:
        target = self.path(cycle_id, f"{name}.jsonl")
        if not target.is_file():
            raise ArtifactMissingError(f"{name} for cycle {cycle_id!r} is missing ({target})")
        return read_models(target, EvalRow).rows
