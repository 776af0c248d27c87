"""Local dataset store (docs/design.md § Two worlds, embedded): immutable, content-addressed dataset versions.

``root/<name>/<version>/`` holds ``SPLIT_FILES`` + ``card.json`` + ``README.md``. The version is the first
16 hex digits of the data hash, so publishing identical splits twice yields the same version (idempotent)
and any change to any split yields a new one; old versions stay loadable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kotone_pipeline.domain.data.jsonl import DataFileError, read_models
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.services.datasets import (
    OPTIONAL_SPLITS,
    SPLIT_FILES,
    DatasetRef,
    DatasetStore,
    check_split_names,
    published_splits,
)
from kotone_pipeline.services.jobs import validate_cycle_id

DEFAULT_DATASET_NAME = "kotone-music-params"
CARD_FILE = "card.json"
README_FILE = "README.md"
VERSION_LENGTH = 16
_CANONICAL: dict[str, Any] = {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class DatasetIntegrityError(ValueError):
    """A stored dataset version does not match its hash (edited or corrupted after publication)."""


class DatasetNotFoundError(FileNotFoundError):
    pass


def canonical_jsonl(rows: list[Pair]) -> bytes:
    """The exact bytes written for a split: one sorted-key compact JSON object per line."""
    lines = (json.dumps(row.model_dump(mode="json", exclude_none=True), **_CANONICAL) + "\n" for row in rows)
    return "".join(lines).encode("utf-8")


def data_hash(split_bytes: dict[str, bytes]) -> str:
    """sha256 over all splits in SPLIT_FILES order; each split is framed by its name and length, so
    moving a row from one split to the next changes the hash."""
    digest = hashlib.sha256()
    for split in (s for s in SPLIT_FILES if s in split_bytes):  # an absent optional split adds nothing
        content = split_bytes[split]
        digest.update(f"{split}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def _columns(splits: dict[str, list[Pair]]) -> list[str]:
    present = {key for rows in splits.values() for row in rows for key in row.model_dump(exclude_none=True)}
    return [name for name in Pair.model_fields if name in present]


def _readme(name: str, version: str, card: dict[str, Any]) -> str:
    counts = "\n".join(f"| {split} | {info['rows']} |" for split, info in card["splits"].items())
    params = card.get("card") or {}
    param_rows = "\n".join(f"| {key} | `{json.dumps(value, ensure_ascii=False)}` |" for key, value in params.items())
    return (
        f"# {name} @ {version}\n\n"
        f"- cycle: `{card['cycle_id']}`\n- data hash (sha256): `{card['data_hash']}`\n"
        f"- published: {card['published_at']}\n- columns: {', '.join(card['columns']) or '(none)'}\n\n"
        f"## Rows per split\n\n| split | rows |\n|---|---|\n{counts}\n\n"
        f"## Generation parameters\n\n| parameter | value |\n|---|---|\n{param_rows or '| (none) | |'}\n"
    )


class LocalDatasetStore(DatasetStore):
    name = "local"

    def __init__(self, root: Path, dataset_name: str = DEFAULT_DATASET_NAME) -> None:
        if not _NAME.fullmatch(dataset_name):
            raise ValueError(f"invalid dataset name {dataset_name!r}: use letters, digits, '.', '_' or '-'")
        self.root = Path(root).absolute()
        self.dataset_name = dataset_name

    def version_dir(self, name: str, version: str) -> Path:
        if not _NAME.fullmatch(name) or not re.fullmatch(r"[0-9a-f]{16}", version):
            raise DatasetNotFoundError(f"invalid local dataset reference {name!r}@{version!r}")
        return self.root / name / version

    def publish(self, cycle_id: str, splits: dict[str, list[Pair]], card: dict[str, Any]) -> DatasetRef:
        """Write the version directory atomically (built aside, then renamed); identical content -> same ref.

        ``card`` (generation parameters etc.) must be JSON-serializable. A version is content-addressed by
        its data only: republishing the same rows with another card returns the first publication.
        """
        validate_cycle_id(cycle_id)
        check_split_names(splits)
        split_bytes = {split: canonical_jsonl(splits[split]) for split in published_splits(splits)}
        full_hash = data_hash(split_bytes)
        version = full_hash[:VERSION_LENGTH]
        final = self.version_dir(self.dataset_name, version)
        ref = DatasetRef(store=self.name, name=self.dataset_name, version=version, uri=str(final), data_hash=full_hash)
        if final.exists():
            self._verify(ref)
            return ref

        card_doc = {
            "name": self.dataset_name,
            "version": version,
            "data_hash": full_hash,
            "cycle_id": cycle_id,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "columns": _columns(splits),
            "splits": {
                split: {
                    "file": SPLIT_FILES[split],
                    "rows": len(splits[split]),
                    "sha256": hashlib.sha256(split_bytes[split]).hexdigest(),
                }
                for split in split_bytes
            },
            "card": card,
        }
        # Serialize before touching the disk: an unserializable card fails with nothing written.
        card_text = json.dumps(card_doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=final.parent))
        try:
            for split, content in split_bytes.items():
                _write_synced(tmp / SPLIT_FILES[split], content)
            _write_synced(tmp / CARD_FILE, card_text.encode("utf-8"))
            _write_synced(tmp / README_FILE, _readme(self.dataset_name, version, card_doc).encode("utf-8"))
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                # Another publisher of the same content won the race: its version is ours.
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return ref

    def load(self, ref: DatasetRef) -> dict[str, list[Pair]]:
        """Exactly the pinned version, after checking every file against the version's hash."""
        version_dir = self._verify(ref)
        return {
            split: read_models(version_dir / filename, Pair, strict=True).rows
            for split, filename in SPLIT_FILES.items()
            if split not in OPTIONAL_SPLITS or (version_dir / filename).is_file()
        }

    def materialize_local(self, ref: DatasetRef, dest: Path) -> Path:
        """Already local: the verified version directory itself (``dest`` is not needed)."""
        return self._verify(ref)

    def versions(self) -> list[str]:
        """Published versions of this store's dataset, oldest first."""
        base = self.root / self.dataset_name
        if not base.is_dir():
            return []
        found = [p for p in base.iterdir() if re.fullmatch(r"[0-9a-f]{16}", p.name) and (p / CARD_FILE).exists()]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def card(self, ref: DatasetRef) -> dict[str, Any]:
        path = self._verify(ref) / CARD_FILE
        try:
            card = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            hint = f"delete {path.parent} and re-materialize split_dataset"
            raise DatasetIntegrityError(f"{path}: missing; {hint}") from None
        except ValueError as exc:
            raise DatasetIntegrityError(
                f"{path}: corrupt dataset card ({exc}); delete {path.parent} and re-materialize split_dataset"
            ) from None
        if not isinstance(card, dict):
            raise DatasetIntegrityError(f"{path}: corrupt dataset card (not a JSON object)")
        return card

    def _verify(self, ref: DatasetRef) -> Path:
        if ref.store != self.name:
            raise ValueError(f"dataset ref {ref.name}@{ref.version} belongs to store {ref.store!r}, not 'local'")
        version_dir = self.version_dir(ref.name, ref.version)
        if not version_dir.is_dir():
            raise DatasetNotFoundError(f"dataset version {ref.name}@{ref.version} not found at {version_dir}")
        if not ref.data_hash.startswith(ref.version):
            raise DatasetIntegrityError(f"dataset ref {ref.name}@{ref.version}: data_hash does not match the version")
        split_bytes: dict[str, bytes] = {}
        for split, filename in SPLIT_FILES.items():
            if split in OPTIONAL_SPLITS and not (version_dir / filename).is_file():
                continue
            try:
                split_bytes[split] = (version_dir / filename).read_bytes()
            except FileNotFoundError as exc:
                raise DataFileError(version_dir / filename, [f"{version_dir / filename}: file not found"]) from exc
        actual = data_hash(split_bytes)
        if actual != ref.data_hash:
            raise DatasetIntegrityError(
                f"{version_dir}: content does not match its hash (expected {ref.data_hash}, got {actual}); "
                f"changed file(s): {', '.join(_changed_files(version_dir, split_bytes)) or 'unknown'}; "
                f"to recover, delete {version_dir} and re-materialize split_dataset (versions are rebuilt from "
                "the cycle's rows)"
            )
        return version_dir


def _changed_files(version_dir: Path, split_bytes: dict[str, bytes]) -> list[str]:
    try:
        recorded = json.loads((version_dir / CARD_FILE).read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        str(version_dir / SPLIT_FILES[split])
        for split, content in split_bytes.items()
        if recorded.get(split, {}).get("sha256") != hashlib.sha256(content).hexdigest()
    ]


def _write_synced(path: Path, content: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
