"""Where each cycle's artifacts live: one file per asset, written as a whole, in the state store."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kotone_pipeline.domain.data.jsonl import (
    atomic_writer,
    describe_validation_error,
    json_bytes,
    jsonl_bytes,
    read_models,
)
from kotone_pipeline.domain.data.schemas import EvalRow, Pair
from kotone_pipeline.services.jobs import validate_cycle_id
from kotone_pipeline.services.state_store import LocalStateStore, StateStore


class ArtifactMissingError(FileNotFoundError):
    """An upstream artifact has not been materialized yet."""


class CorruptStateError(ValueError):
    """A state file exists but cannot be read; the message names it and says how to recover."""


Doc = TypeVar("Doc", bound=BaseModel)
Row = TypeVar("Row", Pair, EvalRow)


class CycleArtifacts:
    """Each cycle's documents and row files, kept in a ``StateStore`` under ``cycles/<id>/``; ``base/``,
    ``jobs/``, ``datasets/`` and ``registry/`` beside them in ``home``.

    The store is by default the files under ``home`` itself. With a remote store (``KOTONE_STATE_STORE=hf``)
    ``home`` is this machine's working folder: ``path()`` still names local files (the outputs a run
    downloads, which ``keep_files``/``local_files`` carry to and from the store) while the documents and row
    files live only in the store, where every pod reads them.
    """

    def __init__(self, home: Path, store: StateStore | None = None) -> None:
        self.home = Path(home).resolve()
        self.store = store if store is not None else LocalStateStore(self.home)

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
    def local(self) -> bool:
        """The store is the files under ``home``: ``path()`` and the store name the same files."""
        return isinstance(self.store, LocalStateStore) and self.store.root == self.home

    def cycle_dir(self, cycle_id: str) -> Path:
        return self.home / "cycles" / validate_cycle_id(cycle_id)

    def path(self, cycle_id: str, name: str) -> Path:
        return self.cycle_dir(cycle_id) / name

    def cycle_key(self, cycle_id: str) -> str:
        """The folder of a cycle's files in the store."""
        return f"cycles/{validate_cycle_id(cycle_id)}"

    def key(self, cycle_id: str, name: str) -> str:
        return f"{self.cycle_key(cycle_id)}/{name}"

    def location(self, cycle_id: str, name: str) -> str:
        """Where a person finds a cycle's file: its path, or its URL in the store."""
        return self.store.location(self.key(cycle_id, name))

    def cycle_location(self, cycle_id: str) -> str:
        return str(self.cycle_dir(cycle_id)) if self.local else self.store.location(self.cycle_key(cycle_id))

    def cycles_on_disk(self) -> list[str]:
        """The cycles the store holds files of."""
        return self.store.folders("cycles")

    def names(self, cycle_id: str) -> set[str]:
        """The names of a cycle's files directly in its folder, from one listing."""
        return {name for name in self.store.list_files(self.cycle_key(cycle_id)) if "/" not in name}

    def files_by_cycle(self) -> dict[str, set[str]]:
        """Each cycle's files (names relative to its folder), from one listing of the store: what the sensor
        reads every tick, without one request per cycle."""
        out: dict[str, set[str]] = {}
        for key in self.store.list_files("cycles"):
            cycle, _, name = key.partition("/")
            if name:
                out.setdefault(cycle, set()).add(name)
        return out

    # --- JSON documents (kotone_pipeline.cycle.documents: one model per file) -------------------
    def write(self, cycle_id: str, doc: BaseModel) -> str:
        """Write a cycle document atomically under its model's ``NAME``; returns its location."""
        name = f"{_name(type(doc))}.json"
        self.store.write(self.key(cycle_id, name), json_bytes(doc.model_dump(mode="json")))
        return self.location(cycle_id, name)

    def has(self, cycle_id: str, model: type[BaseModel] | str) -> bool:
        name = model if isinstance(model, str) else _name(model)
        return self.store.exists(self.key(cycle_id, f"{name}.json"))

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
        try:
            return self.read(cycle_id, model)
        except ArtifactMissingError:
            return None

    def _read_json(self, cycle_id: str, name: str) -> dict[str, Any]:
        data = self.store.read(self.key(cycle_id, f"{name}.json"))
        if data is None:
            raise ArtifactMissingError(
                f"{name} for cycle {cycle_id!r} is missing ({self.location(cycle_id, f'{name}.json')}); "
                "materialize it first"
            )
        try:
            doc = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError included
            raise self._corrupt(cycle_id, name, f"not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise self._corrupt(cycle_id, name, f"expected a JSON object, got {type(doc).__name__}")
        return doc

    def _corrupt(self, cycle_id: str, name: str, reason: str) -> CorruptStateError:
        target = self.location(cycle_id, f"{name}.json")
        return CorruptStateError(
            f"{target}: corrupt cycle document ({reason}); delete it and re-materialize {name} for cycle "
            f"{cycle_id!r} (in the UI, or re-run the cycle: the finished steps are kept)"
        )

    # --- row files and text ---------------------------------------------------------------------
    def write_rows(self, cycle_id: str, name: str, rows: Iterable[Any]) -> str:
        """``name``.jsonl, written as a whole; returns its location."""
        self.store.write(self.key(cycle_id, f"{name}.jsonl"), jsonl_bytes(rows))
        return self.location(cycle_id, f"{name}.jsonl")

    def has_rows(self, cycle_id: str, name: str) -> bool:
        return self.store.exists(self.key(cycle_id, f"{name}.jsonl"))

    def read_pairs(self, cycle_id: str, name: str) -> list[Pair]:
        return self._read_rows(cycle_id, name, Pair)

    def read_eval_rows(self, cycle_id: str, name: str) -> list[EvalRow]:
        return self._read_rows(cycle_id, name, EvalRow)

    def _read_rows(self, cycle_id: str, name: str, model: type[Row]) -> list[Row]:
        where = self.location(cycle_id, f"{name}.jsonl")
        data = self.store.read(self.key(cycle_id, f"{name}.jsonl"))
        if data is None:
            raise ArtifactMissingError(f"{name} for cycle {cycle_id!r} is missing ({where})")
        return read_models(where, model, data=data).rows

    def write_text(self, cycle_id: str, name: str, text: str) -> str:
        self.store.write(self.key(cycle_id, name), text.encode("utf-8"))
        return self.location(cycle_id, name)

    # --- a run's downloaded outputs ---------------------------------------------------------------
    def keep_files(self, cycle_id: str, folder: str, names: Iterable[str]) -> None:
        """Copy the local files ``folder/name`` that exist into a remote store, so that a run on another
        machine finds them (``local_files``); nothing to do when the store is ``home`` itself."""
        if self.local:
            return
        for name in names:
            source = self.path(cycle_id, f"{folder}/{name}")
            if source.is_file():
                self.store.write(self.key(cycle_id, f"{folder}/{name}"), source.read_bytes())

    def local_files(self, cycle_id: str, folder: str, names: Iterable[str]) -> Path:
        """The local folder ``folder`` of a cycle, with the files ``names`` that are missing here fetched from a
        remote store (those it holds)."""
        target = self.path(cycle_id, folder)
        if not self.local:
            for name in names:
                local = target / name
                if not local.is_file() and (data := self.store.read(self.key(cycle_id, f"{folder}/{name}"))):
                    with atomic_writer(local, "wb") as handle:
                        handle.write(data)
        return target


def _name(model: type[BaseModel]) -> str:
    name = getattr(model, "NAME", None)
    if not isinstance(name, str):
        raise TypeError(f"{model.__name__} is not a cycle document (it has no NAME)")
    return name
