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

The convenience functions at the bottom turn the domain results (``EvalSummary``, ``EvalRow``,
``HardDimReport``, ``SplitStats``, ``GateDecision``) into metric dicts and tables, so that an asset
logs each of them in one line.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from pydantic import BaseModel

if TYPE_CHECKING:  # pandas loads only when a table is built: the code location starts leaner
    import pandas as pd

from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.domain.schemas import (
    EvalRow,
    EvalSummary,
    FailureExample,
    GateDecision,
    HardDimReport,
    SplitStats,
)
from kotone_pipeline.services.jobs import validate_cycle_id

TrackerMode = Literal["online", "offline", "disabled"]
TRACKER_MODES: tuple[str, ...] = get_args(TrackerMode)
MODE_ENV = "KOTONE_WANDB_MODE"
PROJECT_ENV = "KOTONE_WANDB_PROJECT"
DEFAULT_PROJECT = "kotone"
DEFAULT_HOST = "https://api.wandb.ai"

# Table names shared with wandb_failures.py, which reads the failure table back from the last run.
PREDICTIONS_TABLE = "predictions"
TOP_FAILURES_TABLE = "top_failures"

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


# -------------------------------------------------------------------------------------- implementations


class _DisabledRun(TrackerRun):
    """Validates what it is given (so bugs show in every mode) and stores nothing."""

    def _log_metrics(self, values: dict[str, int | float]) -> None:
        pass

    def _log_table(self, name: str, frame: pd.DataFrame) -> None:
        pass

    def _log_summary(self, values: dict[str, Any]) -> None:
        pass

    def _log_artifact(self, spec: ArtifactSpec) -> str | None:
        return None

    def _use_artifact(self, name: str, type: str, like: ArtifactSpec | None) -> None:
        pass

    def _finish(self, exit_code: int) -> RunLink:
        return RunLink(mode="disabled")


class _WandbRun(TrackerRun):
    def __init__(
        self, sdk: Any, run: Any, mode: TrackerMode, logged: dict[tuple[str, str], ArtifactSpec] | None = None
    ) -> None:
        super().__init__()
        self._sdk = sdk
        self._run = run
        self._mode = mode
        # (name, alias) -> what was logged under it by any run of the same tracker; offline this is the
        # only way to resolve a name, as there is no server to ask.
        self._logged = {} if logged is None else logged

    def _log_metrics(self, values: dict[str, int | float]) -> None:
        self._run.log(values)

    def _log_table(self, name: str, frame: pd.DataFrame) -> None:
        self._run.log({name: self._sdk.Table(dataframe=frame)})

    def _log_summary(self, values: dict[str, Any]) -> None:
        self._run.summary.update(values)

    def _log_artifact(self, spec: ArtifactSpec) -> str | None:
        logged = self._run.log_artifact(spec.to_wandb(self._sdk), aliases=list(spec.aliases))
        for alias in (*spec.aliases, "latest"):
            self._logged[(spec.name, alias)] = spec
        if self._mode == "online":
            # Wait for the commit, so that the version is known and the next run can use it by name.
            logged.wait()
            self._logged[_split_artifact_name(logged.name)] = spec
            return str(logged.name)
        return f"{spec.name}:{spec.aliases[0] if spec.aliases else 'latest'}"

    def _use_artifact(self, name: str, type: str, like: ArtifactSpec | None) -> None:
        if self._mode == "online":
            self._run.use_artifact(name, type=type)
            return
        key = _split_artifact_name(name)
        spec = self._logged.get(key)
        if spec is None and like is not None and like.name == key[0]:
            spec = like
        if spec is None:
            # Offline there is no server to resolve a name this tracker did not log; keep the intent in
            # the summary instead of failing the cycle over bookkeeping.
            self._run.summary.update({f"used_artifacts/{type}": name})
            return
        if spec.type != type:
            raise ValueError(f"artifact {name} has type {spec.type!r}, not {type!r}")
        # wandb refuses use_artifact offline. Its own online path for a draft artifact does exactly this:
        # log the same content (same digest, so the same version) marked use_after_commit, which `wandb sync`
        # turns into "this run used that version". Only the alias the caller named is re-asserted (plus
        # 'latest', which wandb always adds), so 'champion' never moves back to an older version.
        self._run._log_artifact(spec.to_wandb(self._sdk), aliases=[key[1]], is_user_created=True, use_after_commit=True)

    def _finish(self, exit_code: int) -> RunLink:
        run = self._run
        link = RunLink(
            mode=self._mode,
            run_id=run.id,
            url=run.url if self._mode == "online" else None,
            run_dir=str(Path(run.settings.sync_dir)) if self._mode == "offline" else None,
            project=run.project,
            entity=(run.entity or None) if self._mode == "online" else None,
            group=run.group,
            name=run.name,
        )
        run.finish(exit_code=exit_code)
        return link


def default_wandb_handle() -> dict[str, Any]:
    """The same shape as dagster-wandb's ``wandb_resource`` yields, built from the environment."""
    import wandb

    return {"sdk": wandb, "api": None, "host": wandb_host(os.environ)}


class WandbTracker(Tracker):
    """W&B runs; one run per asset materialization, grouped by cycle id.

    api_factory: returns the W&B handle to use online. In Dagster, pass dagster-wandb's
    ``wandb_resource`` value (``{"sdk": wandb, "api": ..., "host": ...}``, already logged in with the
    configured API key and host) so that authentication is configured in one place, e.g.
    ``WandbTracker("online", ..., api_factory=lambda: context.resources.wandb_resource)``.
    Without it the ``wandb`` module is used and reads ``WANDB_API_KEY`` / ``WANDB_BASE_URL`` itself.
    Offline mode ignores it: it never logs in and never needs a key.
    """

    def __init__(
        self,
        mode: TrackerMode,
        project: str,
        entity: str | None = None,
        root_dir: Path | str = ".",
        *,
        api_factory: Callable[[], Mapping[str, Any]] | None = None,
        init_timeout_s: float = 90.0,
    ) -> None:
        if mode not in TRACKER_MODES:
            raise ValueError(f"tracker mode {mode!r} is not one of {', '.join(TRACKER_MODES)}")
        self.mode = mode
        self.project = project
        self.entity = entity
        self.root_dir = Path(root_dir)
        self._api_factory = api_factory
        self._init_timeout_s = init_timeout_s
        self._logged_artifacts: dict[tuple[str, str], ArtifactSpec] = {}

    def start(self, cycle_id: str, name: str, job_type: str, config: Mapping[str, Any]) -> TrackerRun:
        validate_cycle_id(cycle_id)
        clean_config = redact(dict(config))
        if self.mode == "disabled":
            return _DisabledRun()
        if self.mode == "online" and self._api_factory is not None:
            handle = self._api_factory()
        else:
            handle = default_wandb_handle()
        sdk = handle["sdk"]
        host = handle.get("host") or wandb_host(os.environ)
        extra: dict[str, Any] = {}
        # When weave has been imported anywhere in the process, wandb.init calls weave.init for the
        # run's project, which logs in (an interactive prompt without a key) and needs the network.
        # Tracing is explicit here (weave_tracing.trace_evaluation), so that side door stays shut.
        os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
        if self.mode == "offline":
            # Belt and braces with settings(silent=True): child processes of this one stay quiet too.
            os.environ.setdefault("WANDB_SILENT", "true")
            # wandb stages logged tables under its data dir and `wandb sync` uploads them from there;
            # keeping it beside the runs makes the offline directory self-contained.
            os.environ.setdefault("WANDB_DATA_DIR", str(self.root_dir / "wandb" / "data"))
        else:
            extra["base_url"] = host
        settings = sdk.Settings(
            silent=True,
            console="off",  # stdout may carry anything; only what we log explicitly goes to W&B
            x_disable_stats=True,  # orchestration runs are short; system metrics are noise here
            init_timeout=self._init_timeout_s,
            **extra,
        )
        try:
            run = sdk.init(
                project=self.project,
                entity=self.entity if self.mode == "online" else None,
                group=cycle_id,
                job_type=job_type,
                name=name,
                config=clean_config,
                dir=str(self.root_dir),
                mode=self.mode,
                reinit="create_new",
                settings=settings,
            )
        except (sdk.errors.CommError, sdk.errors.UsageError) as exc:
            if self.mode != "online":
                raise
            raise TrackerUnavailableError(
                f"W&B unreachable at {host}: {exc}; set KOTONE_WANDB_MODE=offline to log locally"
            ) from exc
        return _WandbRun(sdk, run, self.mode, self._logged_artifacts)


def tracker_from_env(
    env: Mapping[str, str], home: Path, *, api_factory: Callable[[], Mapping[str, Any]] | None = None
) -> WandbTracker:
    """The tracker the pipeline uses: mode, project and entity from the environment; runs under home.

    api_factory: the online W&B handle (see ``WandbTracker``); the Dagster layer passes dagster-wandb's."""
    return WandbTracker(
        tracker_mode_from_env(env),
        project=env.get(PROJECT_ENV, "").strip() or DEFAULT_PROJECT,
        entity=env.get("WANDB_ENTITY", "").strip() or None,
        root_dir=home,
        api_factory=api_factory,
    )


# ------------------------------------------------------------------------------ domain -> metrics/tables


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def eval_metrics(summary: EvalSummary) -> dict[str, float]:
    """Headline metrics, per-dim MAE and R², MAE by source type; log with a prefix such as ``eval``."""
    out: dict[str, float] = {
        "rows": summary.rows,
        "vector_mae": summary.vector_mae,
        "mae_raw": summary.mae_raw,
        "mse_norm": summary.mse_norm,
        "mean_r2": summary.mean_r2,
        "exact_match_rate": summary.exact_match_rate,
        "within_one_rate": summary.within_one_rate,
        "json_valid_rate": summary.json_valid_rate,
        "p50_latency_ms": summary.p50_latency_ms,
        "p95_latency_ms": summary.p95_latency_ms,
    }
    out.update({f"per_dim_mae/{d}": v for d, v in summary.per_dim_mae.items()})
    out.update({f"per_dim_r2/{d}": v for d, v in summary.per_dim_r2.items()})
    out.update({f"mae_by_source_type/{s}": v for s, v in summary.by_source_type.items()})
    # R² is NaN for a constant target; W&B charts choke on NaN, so such entries are left out.
    return {k: v for k, v in out.items() if _finite(float(v)) is not None}


def per_dim_table(per_dim_mae: Mapping[str, float], focus: Sequence[str] = ()) -> pd.DataFrame:
    """dim, MAE, rank (1 = worst), focus flag; in DIMS order."""
    import pandas as pd

    ranked = sorted(per_dim_mae, key=lambda d: (-per_dim_mae[d], DIMS.index(d)))
    return pd.DataFrame(
        [
            {"dim": d, "mae": float(per_dim_mae[d]), "rank": ranked.index(d) + 1, "focus": d in focus}
            for d in DIMS
            if d in per_dim_mae
        ]
    )


def predictions_table(rows: Sequence[EvalRow]) -> pd.DataFrame:
    """One line per scored prediction: target, prediction and signed error per dim."""
    import pandas as pd

    records = []
    for row in rows:
        record: dict[str, Any] = {
            "pair_id": row.pair_id,
            "group_id": row.group_id,
            "source_type": row.source_type,
            "text": row.text,
            "valid": row.valid,
            "row_mae": row.row_mae,
            "latency_ms": row.latency_ms,
        }
        target, prediction = row.target.as_dict(), row.prediction.as_dict()
        for d in DIMS:
            record[f"target_{d}"] = target[d]
            record[f"pred_{d}"] = prediction[d]
            record[f"err_{d}"] = prediction[d] - target[d]
        records.append(record)
    return pd.DataFrame(records, columns=_prediction_columns())


def _prediction_columns() -> list[str]:
    base = ["pair_id", "group_id", "source_type", "text", "valid", "row_mae", "latency_ms"]
    return base + [f"{kind}_{d}" for d in DIMS for kind in ("target", "pred", "err")]


FAILURE_COLUMNS: tuple[str, ...] = (
    "rank",
    "pair_id",
    "source_type",
    "text",
    "row_mae",
    *(f"target_{d}" for d in DIMS),
    *(f"pred_{d}" for d in DIMS),
)


def failures_table(failures: Sequence[FailureExample]) -> pd.DataFrame:
    """The failing rows, worst first; the layout ``wandb_failures.failures_from_table`` reads back."""
    import pandas as pd

    records = []
    for rank, failure in enumerate(failures, start=1):
        record: dict[str, Any] = {
            "rank": rank,
            "pair_id": failure.pair_id,
            "source_type": failure.source_type,
            "text": failure.text,
            "row_mae": failure.row_mae,
        }
        record.update({f"target_{d}": v for d, v in failure.target.as_dict().items()})
        record.update({f"pred_{d}": v for d, v in failure.prediction.as_dict().items()})
        records.append(record)
    return pd.DataFrame(records, columns=list(FAILURE_COLUMNS))


def hard_dims_metrics(report: HardDimReport) -> dict[str, float]:
    out: dict[str, float] = {f"mae/{d}": v for d, v in report.by_dim.items()}
    out["k"] = report.k
    out["top_failures"] = len(report.top_failures)
    return out


def hard_dims_summary(report: HardDimReport) -> dict[str, Any]:
    """Non-numeric facts for the run summary (W&B charts only numbers)."""
    return {
        "hard_dims/focus": ", ".join(report.focus),
        "hard_dims/source": report.source,
        "hard_dims/eval_model_id": report.eval_model_id,
    }


def split_metrics(stats: SplitStats) -> dict[str, float]:
    out: dict[str, float] = {f"rows/{s}": n for s, n in stats.rows.items()}
    out.update({f"groups/{s}": n for s, n in stats.groups.items()})
    for split, by_source in stats.counts.items():
        for source_type, by_origin in by_source.items():
            for origin, n in by_origin.items():
                out[f"counts/{split}/{source_type}/{origin}"] = n
    for split, by_dim in stats.dim_stats.items():
        for dim, dim_stats in by_dim.items():
            out[f"dim_mean/{split}/{dim}"] = dim_stats.mean
    return out


def gate_metrics(decision: GateDecision) -> dict[str, float]:
    out: dict[str, float] = {
        "promote": int(decision.promote),
        "forced": int(decision.forced),
        "reference_holdout_mae": decision.reference_holdout_mae,
    }
    if decision.candidate_holdout_mae is not None:
        out["candidate_holdout_mae"] = decision.candidate_holdout_mae
        out["improvement"] = decision.reference_holdout_mae - decision.candidate_holdout_mae
    if decision.json_valid_rate is not None:
        out["json_valid_rate"] = decision.json_valid_rate
    out.update({f"dim_delta/{d}": v for d, v in decision.per_dim_delta.items()})
    return out


def gate_summary(decision: GateDecision) -> dict[str, Any]:
    return {
        "gate/decision": "promote" if decision.promote else "keep",
        "gate/reference": f"{decision.reference_kind}:{decision.reference_id}",
        "gate/candidate_run_id": decision.candidate_run_id or "",
        "gate/reasons": "\n".join(decision.reasons),
    }
