"""Experiment tracking behind a small interface: W&B online, W&B offline (synced later) or disabled.

Mode (``tracker_mode_from_env``): ``KOTONE_WANDB_MODE`` (online | offline | disabled) wins; otherwise
``online`` when ``WANDB_API_KEY`` is set, else ``offline``. Offline runs are written by wandb itself
under ``<root_dir>/wandb/offline-run-*`` (pass ``$KOTONE_HOME`` as root_dir) and never touch the
network; upload them later with ``wandb sync <run dir>``. Disabled writes nothing at all.

Nothing secret is ever logged: config and summaries go through ``redact`` (drops keys that look like
tokens, keys, secrets or passwords, and masks any value that contains a secret from the environment).

Lineage: ``TrackerRun.log_artifact`` declares a W&B Artifact as the run's output (references to where the
data lives plus small files, never the data itself) and ``use_artifact`` declares one as its input, so
W&B's lineage view mirrors Dagster's. Offline both are written into the offline run's record file and
reach W&B with ``wandb sync``; online ``use_artifact`` resolves the name on the server.

The W&B implementation is ``wandb_tracker.py``; ``tracker_tables.py`` turns the domain's results into the
metric dicts and tables a run logs.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from pydantic import BaseModel

if TYPE_CHECKING:  # pandas loads only when a table is built: the code location starts leaner
    import pandas as pd


TrackerMode = Literal["online", "offline", "disabled"]
TRACKER_MODES: tuple[str, ...] = get_args(TrackerMode)
MODE_ENV = "KOTONE_WANDB_MODE"
PROJECT_ENV = "KOTONE_WANDB_PROJECT"
DEFAULT_PROJECT = "kotone"
DEFAULT_HOST = "https://api.wandb.ai"

_SECRET_KEY = re.compile(r"token|key|secret|password", re.IGNORECASE)
_MASK = "***"

# Stricter than W&B itself (which only forbids '/' in names and '/', ':' in aliases): these names end up
# in URLs, aliases and `name:alias` references, where any other character needs quoting or is ambiguous.
_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_REFERENCE_SCHEMES = ("file://", "https://", "http://", "s3://", "gs://")


class TrackerUnavailableError(RuntimeError):
    """The tracking service could not be reached or used; the message says where and why."""


def tracker_mode_from_env(env: Mapping[str, str]) -> TrackerMode:
    explicit = env.get(MODE_ENV, "").strip().lower()
    if explicit:
        if explicit not in TRACKER_MODES:
            raise ValueError(f"{MODE_ENV}={explicit!r} is not one of {', '.join(TRACKER_MODES)}")
        return explicit  # type: ignore[return-value]
    return "online" if env.get("WANDB_API_KEY", "").strip() else "offline"


def wandb_host(env: Mapping[str, str]) -> str:
    return env.get("WANDB_BASE_URL", "").strip().rstrip("/") or DEFAULT_HOST


# ---------------------------------------------------------------------------------------------- redaction


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (HF_TOKEN, WANDB_API_KEY, ...)."""
    env = os.environ if env is None else env
    # Short values would mask ordinary words; real tokens are long.
    return [v for k, v in env.items() if _SECRET_KEY.search(k) and len(v.strip()) >= 8]


def redact(obj: Any, secrets: Sequence[str] | None = None) -> Any:
    """Drop keys matching token/key/secret/password (recursively); mask strings containing a secret."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: redact(v, secrets) for k, v in obj.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(obj, list | tuple):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str) and any(s in obj for s in secrets):
        return _MASK
    return obj


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become ``a/b/c`` keys (W&B groups charts by the ``/`` prefix)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _cell(value: Any, secrets: Sequence[str]) -> Any:
    """Table cells must be scalars; lists and dicts are stored as JSON text."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict | list | tuple):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str) and any(s in value for s in secrets):
        return _MASK
    return value


def to_frame(data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    secrets = secret_values()
    for column in frame.columns:
        # pandas 3 stores text as a string dtype, older versions as object: check anything non-numeric.
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: _cell(v, secrets))
    return frame


# ------------------------------------------------------------------------------------------- artifacts


def artifact_alias(value: str) -> str:
    """A free-form value (cycle id, dataset version, commit sha) as a valid artifact alias."""
    alias = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-.")[:128]
    if not alias:
        raise ValueError(f"cannot make an artifact alias of {value!r}")
    return alias


def _check_artifact_type(type: str) -> None:
    if not _ARTIFACT_NAME.fullmatch(type):
        raise ValueError(f"invalid artifact type {type!r}: use letters, digits, '.', '_' or '-'")


def file_reference(path: Path | str) -> str:
    """A ``file://`` reference to a local file or folder (absolute: the URI must mean the same later)."""
    return Path(path).expanduser().absolute().as_uri()


@dataclass(frozen=True)
class ArtifactSpec:
    """A validated, redacted description of an artifact; rebuilt into a ``wandb.Artifact`` on each use."""

    name: str
    type: str
    aliases: tuple[str, ...] = ()
    files: tuple[tuple[str, Path], ...] = ()
    references: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        name: str,
        type: str,
        aliases: Sequence[str] = (),
        files: Mapping[str, Path] | None = None,
        references: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> ArtifactSpec:
        if not _ARTIFACT_NAME.fullmatch(name):
            raise ValueError(f"invalid artifact name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
        _check_artifact_type(type)
        bad_aliases = [a for a in aliases if not _ARTIFACT_NAME.fullmatch(a)]
        if bad_aliases:
            raise ValueError(f"invalid artifact aliases {bad_aliases}: see artifact_alias()")
        checked_files = []
        for artifact_path, local in (files or {}).items():
            parts = Path(artifact_path).parts
            if not artifact_path or Path(artifact_path).is_absolute() or ".." in parts:
                raise ValueError(f"artifact file path must be relative and stay inside: {artifact_path!r}")
            if not Path(local).is_file():
                raise ValueError(f"artifact file {artifact_path!r}: {local} is not a file")
            checked_files.append((artifact_path, Path(local)))
        for uri in references:
            if not uri.startswith(_REFERENCE_SCHEMES):
                raise ValueError(f"artifact reference {uri!r} must start with one of {', '.join(_REFERENCE_SCHEMES)}")
            if uri.startswith("file://") and not Path(url2pathname(urlparse(uri).path)).exists():
                raise ValueError(f"artifact reference {uri}: nothing there")
        clean = redact(dict(metadata or {}))
        json.dumps(clean)  # W&B stores metadata as JSON: fail here, with our stack, not in the SDK
        # Order-preserving de-duplication: W&B rejects nothing here, but a repeated alias is noise.
        return cls(name, type, tuple(dict.fromkeys(aliases)), tuple(checked_files), tuple(references), clean)

    def to_wandb(self, sdk: Any) -> Any:
        artifact = sdk.Artifact(self.name, type=self.type, metadata=self.metadata)
        for artifact_path, local in self.files:
            artifact.add_file(str(local), name=artifact_path)
        for uri in self.references:
            # Entries go under the reference's last path segment (a folder keeps its name), so that they
            # cannot clash with the small files added above. checksum=False: the digest comes from the URI
            # alone, so nothing is hashed or downloaded (an https reference would otherwise be fetched);
            # the URIs used here are immutable versions.
            segment = urlparse(uri).path.rstrip("/").rsplit("/", 1)[-1]
            artifact.add_reference(uri, name=unquote(segment) or None, checksum=False)
        return artifact


def _split_artifact_name(qualified: str) -> tuple[str, str]:
    """``entity/project/name:alias`` -> (``name``, ``alias``); the alias defaults to ``latest``."""
    tail = qualified.rsplit("/", 1)[-1]
    name, _, alias = tail.partition(":")
    return name, alias or "latest"


# ------------------------------------------------------------------------------------------- interface


class RunLink(BaseModel):
    """Where a finished run can be found: a URL online, a local directory offline, nothing disabled."""

    mode: TrackerMode
    run_id: str | None = None
    url: str | None = None
    run_dir: str | None = None
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    name: str | None = None

    @property
    def sync_command(self) -> str | None:
        return f"wandb sync {self.run_dir}" if self.mode == "offline" and self.run_dir else None

    def as_metadata(self) -> dict[str, str]:
        """Plain values for an asset's metadata (the Dagster layer wraps ``wandb_url`` as a URL)."""
        meta = {"wandb_mode": self.mode}
        if self.run_id:
            meta["wandb_run_id"] = self.run_id
        if self.url:
            meta["wandb_url"] = self.url
        if self.run_dir:
            meta["wandb_run_dir"] = self.run_dir
        if self.sync_command:
            meta["wandb_sync_command"] = self.sync_command
        return meta


class TrackerRun(ABC):
    """One tracked run; use as a context manager or call ``finish()`` exactly when done."""

    def __init__(self) -> None:
        self._link: RunLink | None = None

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        values = flatten(redact(dict(metrics)), prefix)
        bad = [k for k, v in values.items() if isinstance(v, bool) or not isinstance(v, numbers.Real)]
        if bad:
            raise TypeError(f"metrics must be numbers; not numeric: {', '.join(sorted(bad))}")
        self._require_open()
        self._log_metrics(values)

    def log_table(self, name: str, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> None:
        if not name or "/" in name:
            raise ValueError(f"table name must be non-empty and contain no '/': {name!r}")
        self._require_open()
        self._log_table(name, to_frame(data))

    def log_summary(self, values: Mapping[str, Any]) -> None:
        self._require_open()
        self._log_summary(flatten(redact(dict(values))))

    def log_artifact(
        self,
        name: str,
        type: str,
        aliases: Sequence[str] = (),
        files: Mapping[str, Path] | None = None,
        references: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Declare an artifact as this run's output; returns a name other runs can ``use_artifact``.

        files: small files copied into the artifact (artifact path -> local file); references: URIs
        (``file://``, ``https://``, ...) recorded without copying or fetching the data; metadata is redacted.
        Online the returned name carries the version (``kotone-dataset:v3``); offline, where versions are
        assigned at sync time, it carries the first alias (``kotone-dataset:cycle-c1``). None when disabled.
        """
        spec = ArtifactSpec.build(name, type, aliases, files, references, metadata)
        self._require_open()
        return self._log_artifact(spec)

    def use_artifact(self, qualified_name_or_name: str, type: str, like: ArtifactSpec | None = None) -> None:
        """Declare an artifact (``name``, ``name:alias``, ``name:vN``, ``entity/project/name:alias``) as an input.

        ``like``: the spec it was logged from, when another process logged it. Offline there is no server to
        resolve a name, so that spec stands in for it (same files and references, so the same version)."""
        _check_artifact_type(type)
        if not qualified_name_or_name.strip():
            raise ValueError("artifact name must be non-empty")
        self._require_open()
        self._use_artifact(qualified_name_or_name.strip(), type, like)

    def finish(self, exit_code: int = 0) -> RunLink:
        if self._link is None:
            self._link = self._finish(exit_code)
        return self._link

    def _require_open(self) -> None:
        if self._link is not None:
            raise RuntimeError("this run is already finished")

    def __enter__(self) -> TrackerRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exit_code=1 if exc_type else 0)

    @abstractmethod
    def _log_metrics(self, values: dict[str, int | float]) -> None: ...

    @abstractmethod
    def _log_table(self, name: str, frame: pd.DataFrame) -> None: ...

    @abstractmethod
    def _log_summary(self, values: dict[str, Any]) -> None: ...

    @abstractmethod
    def _log_artifact(self, spec: ArtifactSpec) -> str | None: ...

    @abstractmethod
    def _use_artifact(self, name: str, type: str, like: ArtifactSpec | None) -> None: ...

    @abstractmethod
    def _finish(self, exit_code: int) -> RunLink: ...


class Tracker(ABC):
    mode: TrackerMode

    @abstractmethod
    def start(self, cycle_id: str, name: str, job_type: str, config: Mapping[str, Any]) -> TrackerRun:
        """Open a run in the cycle's group; ``config`` is redacted before it is stored."""
