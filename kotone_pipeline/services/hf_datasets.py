"""Hugging Face Hub dataset store (docs/design.md § Two worlds, production): each cycle's split is one commit
of a dataset repo.

A commit holds, for the four splits (train, validation, test, holdout):

- ``data/<split>.parquet`` written by ``datasets`` with explicit ``Features`` (the vector as six named
  ``int8`` fields, parts as a nullable struct of strings, meta as a JSON string), declared as the repo's
  splits in the card's YAML so ``load_dataset(repo, revision=sha)`` works;
- ``splits/<split>.jsonl``: the same rows as canonical Pair JSONL (what the training script and
  ``materialize_local`` download); their bytes define the data hash, as in the local store;
- ``README.md`` (dataset card: cycle, counts, columns, data hash, generation parameters), ``card.json``;
- ``scripts/train_lora.py``: the training script, so a job can run it from its pinned ``resolve/<sha>`` URL;
- ``kotone/publications/<cycle>/<key>.json``: the publication marker. Republishing identical content for a
  cycle finds the commit that added the marker (its ``lastCommit``) instead of committing again.

Consumers always pin the commit sha (``DatasetRef.version``); the repo's ``main`` only moves forward.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub import utils as hf_utils
from huggingface_hub.errors import RemoteEntryNotFoundError
from pydantic import ValidationError

import kotone_pipeline
from kotone_pipeline.domain.data.dims import DIMS, SLOTS
from kotone_pipeline.domain.data.jsonl import atomic_writer, describe_validation_error
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.services.datasets import (
    OPTIONAL_SPLITS,
    SPLIT_FILES,
    DatasetRef,
    DatasetStore,
    check_split_names,
    published_splits,
)
from kotone_pipeline.services.hf_common import (
    TRAINING_SCRIPT_PATH_IN_REPO,
    Redactor,
    RetryPolicy,
    describe_error,
    env_secrets,
    http_status,
    install_request_timeout,
    is_ambiguous,
    is_transient,
    resolve_endpoint,
    resolve_token,
)
from kotone_pipeline.services.jobs import validate_cycle_id
from kotone_pipeline.services.local_datasets import DatasetIntegrityError, canonical_jsonl, data_hash

log = logging.getLogger(__name__)

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "group_id": datasets.Value("string"),
        "source_type": datasets.Value("string"),
        "text": datasets.Value("string"),
        "vector": {dim: datasets.Value("int8") for dim in DIMS},
        "parts": {slot: datasets.Value("string") for slot in SLOTS},
        "origin": datasets.Value("string"),
        "cycle": datasets.Value("string"),
        "parent_id": datasets.Value("string"),
        "meta": datasets.Value("string"),
    }
)
DEFAULT_TRAINING_SCRIPT = Path(kotone_pipeline.__file__).parent / "training" / "train_lora.py"
PARQUET_DIR = "data"
JSONL_DIR = "splits"
CARD_JSON = "card.json"
MARKER_DIR = "kotone/publications"
_UNSET: Any = object()


class HfDatasetStoreError(RuntimeError):
    """A Hub call failed; ``transient`` says whether a later retry may succeed."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """No upload progress bars: in a Dagster step they only clutter the captured logs. Process-wide while
    it lasts (huggingface_hub has no per-call switch)."""
    was_disabled = hf_utils.are_progress_bars_disabled()
    hf_utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            hf_utils.enable_progress_bars()


def validate_splits(splits: Mapping[str, list[Any]]) -> dict[str, list[Pair]]:
    """Every row re-validated as a Pair (a ``model_construct``-ed row gets no free pass), parts limited to
    the four slots: a row the Parquet schema cannot hold is refused here, before anything is uploaded."""
    check_split_names(splits)
    problems: list[str] = []
    valid: dict[str, list[Pair]] = {}
    for split in published_splits(splits):
        valid[split] = []
        for index, row in enumerate(splits[split]):
            data = row.model_dump(mode="json") if isinstance(row, Pair) else row
            try:
                pair = Pair.model_validate(data)
            except ValidationError as exc:
                problems.append(f"{split}[{index}]: {describe_validation_error(exc)}")
                continue
            extra = sorted(set(pair.parts or {}) - set(SLOTS))
            if extra:
                problems.append(f"{split}[{index}] ({pair.id}): parts has unknown slot(s) {', '.join(extra)}")
                continue
            valid[split].append(pair)
    if problems:
        shown = "\n".join(problems[:20])
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"{len(problems)} invalid row(s), nothing published:\n{shown}{more}")
    return valid


def to_record(pair: Pair) -> dict[str, Any]:
    """One Parquet row (FEATURES)."""
    return {
        "id": pair.id,
        "group_id": pair.group_id,
        "source_type": pair.source_type,
        "text": pair.text,
        "vector": pair.vector.as_dict(),
        "parts": None if pair.parts is None else {slot: pair.parts.get(slot) for slot in SLOTS},
        "origin": pair.origin,
        "cycle": pair.cycle,
        "parent_id": pair.parent_id,
        "meta": json.dumps(pair.meta, ensure_ascii=False, sort_keys=True),
    }


def from_record(record: dict[str, Any]) -> Pair:
    parts = record.get("parts")
    return Pair.model_validate(
        {
            **record,
            "parts": None if parts is None else {k: v for k, v in parts.items() if v is not None},
            "meta": json.loads(record.get("meta") or "{}"),
        }
    )


def parquet_bytes(pairs: list[Pair]) -> bytes:
    with _quiet_datasets(), tempfile.TemporaryDirectory(prefix="kotone-parquet-") as tmp:
        path = Path(tmp) / "split.parquet"
        datasets.Dataset.from_list([to_record(p) for p in pairs], features=FEATURES).to_parquet(str(path))
        return path.read_bytes()


def read_parquet(path: Path) -> list[Pair]:
    with _quiet_datasets(), tempfile.TemporaryDirectory(prefix="kotone-parquet-cache-") as cache:
        ds = datasets.Dataset.from_parquet(str(path), features=FEATURES, cache_dir=cache, keep_in_memory=True)
        return [from_record(record) for record in ds.to_list()]


def card_yaml(repo_id: str) -> str:
    files = "\n".join(
        f"  - split: {split}\n    path: {PARQUET_DIR}/{split}.parquet"
        for split in SPLIT_FILES
        if split not in OPTIONAL_SPLITS  # present in a version only when it has rows
    )
    return (
        "---\n"
        f"pretty_name: {repo_id.split('/')[-1]}\n"
        "tags:\n- kotone\n- music\n"
        "configs:\n- config_name: default\n  data_files:\n"
        f"{files}\n"
        "---\n"
    )


def readme(repo_id: str, card_doc: dict[str, Any]) -> str:
    counts = "\n".join(f"| {split} | {info['rows']} | {info['groups']} |" for split, info in card_doc["splits"].items())
    columns = "\n".join(f"| {name} | `{kind}` |" for name, kind in card_doc["columns"].items())
    params = card_doc.get("card") or {}
    param_rows = "\n".join(f"| {k} | `{json.dumps(v, ensure_ascii=False)}` |" for k, v in params.items())
    return (
        card_yaml(repo_id) + f"\n# {repo_id}: cycle `{card_doc['cycle_id']}`\n\n"
        f"- data hash (sha256 of the canonical split JSONL): `{card_doc['data_hash']}`\n"
        f"- published: {card_doc['published_at']}\n"
        f"- files: `{PARQUET_DIR}/<split>.parquet` (typed), `{JSONL_DIR}/<split>.jsonl` (Pair JSONL)\n\n"
        f"## Rows per split\n\n| split | rows | groups |\n|---|---|---|\n{counts}\n\n"
        f"## Columns\n\n| column | type |\n|---|---|\n{columns}\n\n"
        f"## Generation parameters\n\n| parameter | value |\n|---|---|\n{param_rows or '| (none) | |'}\n"
    )


def _column_types() -> dict[str, str]:
    out = {}
    for name, feature in FEATURES.items():
        if isinstance(feature, dict):
            inner = {getattr(v, "dtype", str(v)) for v in feature.values()}
            out[name] = f"struct<{', '.join(feature)}: {'/'.join(sorted(inner))}>"
        else:
            out[name] = feature.dtype + (" (JSON)" if name == "meta" else "")
    return out


class HfHubDatasetStore(DatasetStore):
    name = "hf"

    def __init__(
        self,
        repo_id: str,
        token: str | None = None,
        endpoint: str | None = None,
        private: bool = True,
        *,
        training_script: Path | None = _UNSET,
        retry: RetryPolicy | None = None,
        api: HfApi | None = None,
    ) -> None:
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"dataset repo id must be ORG/NAME, got {repo_id!r}")
        self.repo_id = repo_id
        self.endpoint = resolve_endpoint(endpoint or (api.endpoint if api is not None else None))
        self._token = resolve_token(token)
        self.api = api or HfApi(endpoint=self.endpoint, token=self._token)
        self.private = private
        if training_script is _UNSET:
            training_script = DEFAULT_TRAINING_SCRIPT if DEFAULT_TRAINING_SCRIPT.is_file() else None
        self.training_script = training_script
        self.retry = retry or RetryPolicy()
        self.redact = Redactor([self._token, *env_secrets().values()])
        self._repo_ready = False
        install_request_timeout(self.retry.request_timeout_s)

    # -- URLs ---------------------------------------------------------------------------------------------

    def tree_url(self, sha: str) -> str:
        return f"{self.endpoint}/datasets/{self.repo_id}/tree/{sha}"

    def file_url(self, ref: DatasetRef, path_in_repo: str) -> str:
        """The pinned download URL of a file of this dataset version (e.g. the training script)."""
        return f"{self.endpoint}/datasets/{ref.name}/resolve/{ref.version}/{path_in_repo}"

    # -- DatasetStore -------------------------------------------------------------------------------------

    def publish(
        self,
        cycle_id: str,
        splits: dict[str, list[Pair]],
        card: dict[str, Any],
        *,
        extra_files: Mapping[str, Path | bytes] | None = None,
    ) -> DatasetRef:
        """One commit with the four splits, the card, the training script and ``extra_files``
        (path in repo -> local file or bytes). Identical content for the same cycle returns the existing
        commit. Invalid rows are refused before anything is sent."""
        validate_cycle_id(cycle_id)
        pairs = validate_splits(splits)
        split_bytes = {split: canonical_jsonl(pairs[split]) for split in pairs}
        full_hash = data_hash(split_bytes)
        extras = self._extra_files(extra_files)
        key = hashlib.sha256(
            "\n".join(
                [full_hash, *(f"{p}:{hashlib.sha256(b).hexdigest()}" for p, b in sorted(extras.items()))]
            ).encode()
        ).hexdigest()[:16]
        marker = f"{MARKER_DIR}/{cycle_id}/{key}.json"

        self._ensure_repo()
        existing = self._find_marker(marker)
        if existing is not None:
            return self._ref(existing, full_hash)

        card_doc = self._card_doc(cycle_id, pairs, split_bytes, full_hash, extras, card)
        card_text = self.redact(json.dumps(card_doc, ensure_ascii=False, indent=2, sort_keys=True)) + "\n"
        operations = [
            *(CommitOperationAdd(f"{JSONL_DIR}/{SPLIT_FILES[split]}", split_bytes[split]) for split in pairs),
            *(CommitOperationAdd(f"{PARQUET_DIR}/{split}.parquet", parquet_bytes(pairs[split])) for split in pairs),
            CommitOperationAdd("README.md", self.redact(readme(self.repo_id, card_doc)).encode("utf-8")),
            CommitOperationAdd(CARD_JSON, card_text.encode("utf-8")),
            *(CommitOperationAdd(path, data) for path, data in sorted(extras.items())),
            CommitOperationAdd(marker, card_text.encode("utf-8")),
        ]
        head = self._read("read main", lambda: self.api.dataset_info(self.repo_id, revision="main").sha)
        message = f"kotone cycle {cycle_id}: dataset {full_hash[:12]}"
        try:
            with _quiet_hub():
                commit = self.api.create_commit(
                    self.repo_id,
                    operations,
                    commit_message=message,
                    commit_description=f"data hash {full_hash}\npublication {key}",
                    repo_type="dataset",
                    parent_commit=head,  # a concurrent publisher makes this fail instead of interleaving
                )
        except Exception as exc:
            return self._reconcile_after_failed_commit(marker, full_hash, exc)
        return self._ref(commit.oid, full_hash)

    def load(self, ref: DatasetRef) -> dict[str, list[Pair]]:
        """The pinned commit's typed Parquet splits, checked against the ref's data hash."""
        self._check_ref(ref)
        with tempfile.TemporaryDirectory(prefix="kotone-hf-load-") as cache:
            loaded = {
                split: read_parquet(Path(self._download(f"{PARQUET_DIR}/{split}.parquet", ref.version, cache)))
                for split in self._splits_of(ref)
            }
        actual = data_hash({split: canonical_jsonl(rows) for split, rows in loaded.items()})
        if actual != ref.data_hash:
            raise DatasetIntegrityError(
                f"{ref.uri}: content does not match its hash (expected {ref.data_hash}, got {actual})"
            )
        return loaded

    def _splits_of(self, ref: DatasetRef) -> list[str]:
        """The splits the pinned version holds (its card lists them; an optional one may be absent)."""
        recorded = self.card(ref).get("splits")
        names = set(recorded) if isinstance(recorded, dict) else set(SPLIT_FILES)
        return [s for s in SPLIT_FILES if s in names or s not in OPTIONAL_SPLITS]

    def materialize_local(self, ref: DatasetRef, dest: Path) -> Path:
        """Download the pinned commit's split JSONL files (``SPLIT_FILES``) into ``dest``, hash-checked."""
        self._check_ref(ref)
        dest = Path(dest).absolute()
        with tempfile.TemporaryDirectory(prefix="kotone-hf-materialize-") as cache:
            contents = {
                split: Path(self._download(f"{JSONL_DIR}/{SPLIT_FILES[split]}", ref.version, cache)).read_bytes()
                for split in self._splits_of(ref)
            }
        actual = data_hash(contents)
        if actual != ref.data_hash:
            raise DatasetIntegrityError(
                f"{ref.uri}: split files do not match the hash (expected {ref.data_hash}, got {actual})"
            )
        for split, content in contents.items():
            with atomic_writer(dest / SPLIT_FILES[split], "wb") as handle:
                handle.write(content)
        return dest

    def card(self, ref: DatasetRef) -> dict[str, Any]:
        self._check_ref(ref)
        with tempfile.TemporaryDirectory(prefix="kotone-hf-card-") as cache:
            return json.loads(Path(self._download(CARD_JSON, ref.version, cache)).read_text(encoding="utf-8"))

    # -- internals ----------------------------------------------------------------------------------------

    def _extra_files(self, extra_files: Mapping[str, Path | bytes] | None) -> dict[str, bytes]:
        extras: dict[str, bytes] = {}
        if self.training_script is not None:
            extras[TRAINING_SCRIPT_PATH_IN_REPO] = Path(self.training_script).read_bytes()
        for path, content in (extra_files or {}).items():
            if path.startswith(("/", f"{MARKER_DIR}/")) or ".." in path.split("/"):
                raise ValueError(f"extra file path {path!r} is not allowed")
            extras[path] = content if isinstance(content, bytes) else Path(content).read_bytes()
        return extras

    def _card_doc(
        self,
        cycle_id: str,
        pairs: dict[str, list[Pair]],
        split_bytes: dict[str, bytes],
        full_hash: str,
        extras: dict[str, bytes],
        card: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "cycle_id": cycle_id,
            "data_hash": full_hash,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "columns": _column_types(),
            "splits": {
                split: {
                    "rows": len(pairs[split]),
                    "groups": len({p.group_id for p in pairs[split]}),
                    "jsonl": f"{JSONL_DIR}/{SPLIT_FILES[split]}",
                    "parquet": f"{PARQUET_DIR}/{split}.parquet",
                    "sha256": hashlib.sha256(split_bytes[split]).hexdigest(),
                }
                for split in pairs
            },
            "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(extras.items())},
            "card": card,
        }

    def _ref(self, sha: str, full_hash: str) -> DatasetRef:
        return DatasetRef(store=self.name, name=self.repo_id, version=sha, uri=self.tree_url(sha), data_hash=full_hash)

    def _check_ref(self, ref: DatasetRef) -> None:
        if ref.store != self.name:
            raise ValueError(f"dataset ref {ref.name}@{ref.version} belongs to store {ref.store!r}, not 'hf'")
        if len(ref.version) != 40 or any(c not in "0123456789abcdef" for c in ref.version):
            raise ValueError(f"dataset ref {ref.name}@{ref.version}: version must be a 40-hex commit sha")

    def _ensure_repo(self) -> None:
        if not self._repo_ready:
            self._read(
                f"create {self.repo_id}",
                lambda: self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True),
            )
            self._repo_ready = True

    def _find_marker(self, marker: str) -> str | None:
        """The commit that published this content for this cycle, if any (the marker's last commit)."""
        found = self._read(
            f"look up {marker}",
            lambda: self.api.get_paths_info(self.repo_id, [marker], expand=True, repo_type="dataset", revision="main"),
        )
        for entry in found:
            if entry.path == marker and getattr(entry, "last_commit", None) is not None:
                return str(entry.last_commit.oid)
        return None

    def _reconcile_after_failed_commit(self, marker: str, full_hash: str, exc: BaseException) -> DatasetRef:
        """A commit that failed ambiguously (5xx, timeout) or lost a race may exist: look before retrying."""
        error = describe_error(exc, self.redact)
        status = http_status(exc)
        if status is not None and not is_ambiguous(exc) and status not in (409, 412):
            raise HfDatasetStoreError(f"commit to {self.repo_id} refused: {error}", transient=False) from None
        existing = self._find_marker(marker)
        if existing is not None:
            log.warning("commit to %s failed (%s) but the publication exists: reusing it", self.repo_id, error)
            return self._ref(existing, full_hash)
        raise HfDatasetStoreError(
            f"commit to {self.repo_id} failed ({error}) and no such publication exists; a later publish may retry",
            transient=True,
        ) from None

    def _download(self, filename: str, revision: str, cache_dir: str) -> str:
        def fetch() -> str:
            return hf_hub_download(
                self.repo_id,
                filename,
                repo_type="dataset",
                revision=revision,
                cache_dir=cache_dir,
                endpoint=self.endpoint,
                token=self._token,
            )

        return self._read(f"download {filename}@{revision}", fetch)

    def _read(self, what: str, fn: Any) -> Any:
        try:
            return self.retry.call(fn)
        except RemoteEntryNotFoundError as exc:
            raise HfDatasetStoreError(f"{what}: {describe_error(exc, self.redact)}", transient=False) from None
        except Exception as exc:
            if isinstance(exc, HfDatasetStoreError):
                raise
            raise HfDatasetStoreError(
                f"{what}: {describe_error(exc, self.redact)}", transient=is_transient(exc)
            ) from None
