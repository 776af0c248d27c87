"""Where each cycle's artifacts live under ``$KOTONE_HOME`` (one file per asset, written atomically)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kotone_pipeline.domain.data.jsonl import describe_validation_error, read_models, write_json, write_jsonl
from kotone_pipeline.domain.data.schemas import EvalRow, Pair
from kotone_pipeline.services.jobs import validate_cycle_id


class ArtifactMissingError(FileNotFoundError):
    """An upstream artifact has not been materialized yet."""


class CorruptStateError(ValueError):
    """A state file exists but cannot be read; the message names it and says how to recover."""


Doc = TypeVar("Doc", bound=BaseModel)


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

    def cycle_dir(self, cycle_id: str) -> Path:
        return self.home / "cycles" / validate_cycle_id(cycle_id)

    def path(self, cycle_id: str, name: str) -> Path:
        return self.cycle_dir(cycle_id) / name

    def cycles_on_disk(self) -> list[str]:
        root = self.home / "cycles"
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    # --- JSON documents (kotone_pipeline.cycle.documents: one model per file) -------------------
    def write(self, cycle_id: str, doc: BaseModel) -> Path:
        """Write a cycle document atomically under its model's ``NAME``."""
        target = self.path(cycle_id, f"{_name(type(doc))}.json")
        write_json(target, doc.model_dump(mode="json"))
        return target

    def has(self, cycle_id: str, model: type[BaseModel] | str) -> bool:
        name = model if isinstance(model, str) else _name(model)
        return self.path(cycle_id, f"{name}.json").is_file()

    def read(self, cycle_id: str, model: type[Doc]) -> Doc:
        """The document, checked against its model; a missing one raises ``ArtifactMissingError``, one that is
        not valid JSON or does not fit the model ``CorruptStateError`` naming the file and how to recover."""
        name = _name(model)
        raw = self._read_json(cycle_id, name)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise self._corrupt(cycle_id, name, describe_validation_error(exc)) from None

    def read_if_present(self, cycle_id: str, model: type[Doc]) -> Doc | None:
        return self.read(cycle_id, model) if self.has(cycle_id, model) else None

    def _read_json(self, cycle_id: str, name: str) -> dict[str, Any]:
        target = self.path(cycle_id, f"{name}.json")
        if not target.is_file():
            raise ArtifactMissingError(f"{name} for cycle {cycle_id!r} is missing ({target}); materialize it first")
        try:
            doc = json.loads(target.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError included
            raise self._corrupt(cycle_id, name, f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self._corrupt(cycle_id, name, f"expected a JSON object, got {type(doc).__name__}")
        return doc

    def _corrupt(self, cycle_id: str, name: str, reason: str) -> CorruptStateError:
        target = self.path(cycle_id, f"{name}.json")
        return CorruptStateError(
            f"{target}: corrupt cycle document ({reason}); delete it and re-materialize {name} for cycle "
            f"{cycle_id!r} (in the UI, or re-run the cycle: the finished steps are kept)"
        )

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


def _name(model: type[BaseModel]) -> str:
    name = getattr(model, "NAME", None)
    if not isinstance(name, str):
        raise TypeError(f"{model.__name__} is not a cycle document (it has no NAME)")
    return name
