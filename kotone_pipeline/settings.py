"""Every environment variable the project reads, in one pydantic model, checked before anything runs.

``load_settings()`` is the one reader of these variables. It is called by every ``kotone`` command (the
CLI callback) and by ``resources_from_env`` when the code location loads, so a bad setting stops the
command (or shows in the Dagster UI as a load error) with one line per problem: the variable, its value and what is
allowed — never a stack trace in the middle of a cycle. Secrets (``HF_TOKEN``, ``WANDB_API_KEY``,
``DAGSTER_PG_PASSWORD``) are checked but their values are never echoed.

Only the variables a user sets are here; those the pipeline itself sets for a training job
(``KOTONE_CYCLE``, ``KOTONE_RUN``, ``KOTONE_DATASET_REPO``, ``KOTONE_OUTPUT_*``) are the job's inputs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.paths import DEFAULT_HOME, REPOSITORY_DATA_DIR, Places, install_places
from kotone_pipeline.domain.data.schemas import LocalHyperParams
from kotone_pipeline.domain.loop.hparams import max_campaign_size

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
SECRETS = frozenset({"HF_TOKEN", "WANDB_API_KEY", "DAGSTER_PG_PASSWORD", "KOTONE_REVIEW_TOKEN"})
_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_WANDB_NAME = r"^[^/\\#?%:]{1,128}$"  # W&B refuses these characters in project and entity names


class ConfigurationError(ValueError):
    """Settings that are invalid or cannot work together; raised before any cycle runs."""


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http(s) URL such as https://host[:port]")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise ValueError("expected an http(s) URL with a numeric port 1..65535") from None
    return value


def check_world(job_backend: str, dataset_store: str, trainer: str) -> None:
    """The job backend, dataset store and trainer must belong to one world (docs/design.md § Two worlds)."""
    if job_backend == "local" and dataset_store == "hf":
        raise ConfigurationError(
            "KOTONE_JOB_BACKEND=local trains from a dataset directory on this machine, but "
            "KOTONE_DATASET_STORE=hf publishes splits to the Hub: use KOTONE_DATASET_STORE=local with the "
            "local backend, or KOTONE_JOB_BACKEND=hf"
        )
    if job_backend == "hf" and dataset_store != "hf":
        raise ConfigurationError(
            f"KOTONE_JOB_BACKEND=hf: HF Jobs read the pinned dataset commit from the Hub, but "
            f"KOTONE_DATASET_STORE={dataset_store}: set KOTONE_DATASET_STORE=hf (and KOTONE_HF_DATASET_REPO)"
        )
    if job_backend == "hf" and trainer != "lora":
        raise ConfigurationError(
            f"KOTONE_JOB_BACKEND=hf runs the LoRA trainer, but KOTONE_TRAINER={trainer}: set KOTONE_TRAINER=lora "
            "(or leave it unset: it defaults to lora with the hf backend)"
        )


class Settings(BaseModel):
    """The project's configuration; field aliases are the environment variable names."""

    model_config = ConfigDict(extra="ignore", populate_by_name=False, frozen=True)

    home: str | None = Field(None, alias="KOTONE_HOME", description="a directory (created when missing)")
    dagster_home: str | None = Field(None, alias="DAGSTER_HOME", description="a directory")
    data_dir: str | None = Field(None, alias="KOTONE_DATA_DIR", description="an existing directory")
    trainer: Literal["local", "lora"] | None = Field(None, alias="KOTONE_TRAINER")
    campaign_size: int = Field(2, alias="KOTONE_CAMPAIGN_SIZE", ge=1, le=16)
    hard_dim_k: int = Field(2, alias="KOTONE_HARD_DIM_K", ge=1, le=len(DIMS))
    forced_hard_dims: list[str] = Field(
        default_factory=list, alias="KOTONE_FORCED_HARD_DIMS", description="comma-separated dims"
    )
    hard_dims_source: Literal["eval_rows", "wandb_failures"] = Field("eval_rows", alias="KOTONE_HARD_DIMS_SOURCE")
    allow_stale: bool = Field(False, alias="KOTONE_ALLOW_STALE")
    wandb_timeout_s: int = Field(20, alias="KOTONE_WANDB_TIMEOUT_S", ge=1, le=3600)
    add_ratio: float = Field(0.2, alias="KOTONE_ADD_RATIO", ge=0, le=1)
    replay_ratio: float = Field(0.15, alias="KOTONE_REPLAY_RATIO", ge=0, le=1)
    split_seed: int = Field(20261125, alias="KOTONE_SPLIT_SEED", ge=0, lt=2**63)
    # Unset: the local trainer's 1800 s, or for LoRA jobs the formula of domain/loop/job_timeout.py.
    job_timeout_s: int | None = Field(None, alias="KOTONE_JOB_TIMEOUT_S", ge=60, le=7 * 24 * 3600)
    job_max_steps: int | None = Field(None, alias="KOTONE_JOB_MAX_STEPS", ge=1)
    job_max_train_rows: int | None = Field(None, alias="KOTONE_JOB_MAX_TRAIN_ROWS", ge=1)
    job_max_predict_rows: int | None = Field(None, alias="KOTONE_JOB_MAX_PREDICT_ROWS", ge=1)
    min_improvement: float = Field(0.005, alias="KOTONE_MIN_IMPROVEMENT", ge=0, le=10)
    max_dim_regression: float = Field(0.15, alias="KOTONE_MAX_DIM_REGRESSION", ge=0, le=10)
    max_human_regression: float = Field(0.05, alias="KOTONE_MAX_HUMAN_REGRESSION", ge=0, le=10)
    # Once the field set decides, how much worse than the champion the teacher's holdout may get. Learning
    # from people's labels moves a model off the lexicon teacher's reading by design (measured in `make demo`:
    # +0.04..0.06 on the teacher's holdout for -7..11% on people's requests); the guard is against forgetting.
    max_holdout_regression: float = Field(0.1, alias="KOTONE_MAX_HOLDOUT_REGRESSION", ge=0, le=10)
    min_json_valid_rate: float = Field(0.98, alias="KOTONE_MIN_JSON_VALID_RATE", ge=0, le=1)
    dagster_url: str | None = Field(None, alias="KOTONE_DAGSTER_URL")
    sensor_interval_s: int = Field(30, alias="KOTONE_SENSOR_INTERVAL_S", ge=1, le=24 * 3600)
    encoder: str | None = Field(None, alias="KOTONE_ENCODER")
    embedding_cache: str | None = Field(None, alias="KOTONE_EMBEDDING_CACHE", description="a directory")
    encoder_sha256: str | None = Field(
        None, alias="KOTONE_ENCODER_SHA256", pattern=r"^[0-9a-fA-F]{64}$", description="64 hex digits (a SHA-256)"
    )
    nightly_cron: str = Field("0 2 * * *", alias="KOTONE_NIGHTLY_CRON")
    nightly_timezone: str = Field("UTC", alias="KOTONE_NIGHTLY_TIMEZONE")
    job_backend: Literal["local", "hf"] = Field("local", alias="KOTONE_JOB_BACKEND")
    dataset_store: Literal["local", "hf"] = Field("local", alias="KOTONE_DATASET_STORE")
    # Where cycle documents and the champion registry live: files under KOTONE_HOME, or a Hugging Face repo
    # that every pod of a deployment reaches without a shared volume (deploy/README.md).
    state_store: Literal["local", "hf"] = Field("local", alias="KOTONE_STATE_STORE")
    hf_state_repo: str | None = Field(
        None,
        alias="KOTONE_HF_STATE_REPO",
        pattern=rf"^{_REPO_PART}/{_REPO_PART}$",
        description="a repo id such as my-org/kotone-state",
    )
    hf_namespace: str | None = Field(
        None, alias="KOTONE_HF_NAMESPACE", pattern=rf"^{_REPO_PART}$", description="a Hugging Face user or org name"
    )
    hf_dataset_repo: str | None = Field(
        None,
        alias="KOTONE_HF_DATASET_REPO",
        pattern=rf"^{_REPO_PART}/{_REPO_PART}$",
        description="a repo id such as my-org/kotone-music-params",
    )
    hf_flavor: str = Field(
        "a10g-small", alias="KOTONE_HF_FLAVOR", pattern=r"^[a-z0-9][a-z0-9-]*$", description="a flavor such as l4x1"
    )
    hf_budget_usd: float = Field(10.0, alias="KOTONE_HF_BUDGET_USD", gt=0, le=100_000)
    hf_scheduling_limit_s: int = Field(3600, alias="KOTONE_HF_SCHEDULING_LIMIT_S", ge=1)
    hf_training_script: str | None = Field(None, alias="KOTONE_HF_TRAINING_SCRIPT", description="an existing file")
    hf_token: str | None = Field(None, alias="HF_TOKEN")
    hf_endpoint: str | None = Field(None, alias="HF_ENDPOINT")
    wandb_mode: Literal["online", "offline", "disabled"] | None = Field(None, alias="KOTONE_WANDB_MODE")
    wandb_project: str = Field(
        "kotone", alias="KOTONE_WANDB_PROJECT", pattern=_WANDB_NAME, description="a name without / \\ # ? % :"
    )
    wandb_entity: str | None = Field(
        None, alias="WANDB_ENTITY", pattern=_WANDB_NAME, description="a name without / \\ # ? % :"
    )
    wandb_api_key: str | None = Field(None, alias="WANDB_API_KEY")
    wandb_base_url: str | None = Field(None, alias="WANDB_BASE_URL")
    # The flywheel: served requests, people's reviews, the field set (docs/how-it-works.md, "The loop learns
    # from the people who use it").
    request_log: bool = Field(True, alias="KOTONE_REQUEST_LOG", description="on or off")
    request_log_max_rows: int | None = Field(
        None, alias="KOTONE_REQUEST_LOG_MAX_ROWS", ge=1000, description="keep at most this many requests"
    )
    request_log_max_age_days: float | None = Field(
        None, alias="KOTONE_REQUEST_LOG_MAX_AGE_DAYS", gt=0, description="drop requests older than this"
    )
    review_token: str | None = Field(None, alias="KOTONE_REVIEW_TOKEN")
    field_share: float = Field(1 / 3, alias="KOTONE_FIELD_SHARE", gt=0, lt=1)
    field_min_rows: int = Field(30, alias="KOTONE_FIELD_MIN_ROWS", ge=1)
    reviewed_weight: float = Field(1.0, alias="KOTONE_REVIEWED_WEIGHT", gt=0, le=100)
    min_people_rows: int = Field(
        LocalHyperParams.model_fields["min_people_rows"].default, alias="KOTONE_MIN_PEOPLE_ROWS", ge=2
    )
    lexicon_auto_accept: bool = Field(False, alias="KOTONE_LEXICON_AUTO_ACCEPT")
    dagster_storage: Literal["sqlite", "postgres"] = Field("sqlite", alias="KOTONE_DAGSTER_STORAGE")
    pg_host: str | None = Field(None, alias="DAGSTER_PG_HOST")
    pg_port: int | None = Field(None, alias="DAGSTER_PG_PORT", ge=1, le=65535)
    pg_db: str | None = Field(None, alias="DAGSTER_PG_DB")
    pg_username: str | None = Field(None, alias="DAGSTER_PG_USERNAME")
    pg_password: str | None = Field(None, alias="DAGSTER_PG_PASSWORD")

    @field_validator(
        "add_ratio",
        "replay_ratio",
        "min_improvement",
        "max_dim_regression",
        "max_human_regression",
        "max_holdout_regression",
        "min_json_valid_rate",
        "hf_budget_usd",
        "field_share",
        "reviewed_weight",
        "request_log_max_age_days",
        mode="before",
    )
    @classmethod
    def _no_nan(cls, value: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value  # pydantic names it "a valid number"
        if math.isnan(number) or math.isinf(number):
            raise ValueError("expected a finite number, not NaN or infinity")
        return value

    @field_validator("wandb_mode", "dagster_storage", "state_store", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # as the tracker and runner read them

    @field_validator("dagster_url", "hf_endpoint", "wandb_base_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _url(value)

    @field_validator("allow_stale", "request_log", "lexicon_auto_accept", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().lower() not in _TRUE | _FALSE:
                raise ValueError("expected true or false (also 1/0, yes/no, on/off)")
            return value.strip().lower() in _TRUE
        return value

    @field_validator("forced_hard_dims", mode="before")
    @classmethod
    def _dims(cls, value: Any) -> Any:
        dims = [d.strip() for d in value.split(",") if d.strip()] if isinstance(value, str) else value
        unknown = [d for d in dims if d not in DIMS] if isinstance(dims, list) else []
        if unknown:
            raise ValueError(f"unknown dim(s) {', '.join(unknown)}; allowed: comma-separated {', '.join(DIMS)}")
        return dims

    @field_validator("nightly_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as UTC or Asia/Tokyo") from None
        return value

    @field_validator("nightly_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value == "0 2 * * *":
            return value
        from kotone_pipeline.compat.dagster import is_valid_cron_string  # only when set: dagster is slow to import

        if not is_valid_cron_string(value):
            raise ValueError("expected a 5-field cron expression such as '0 2 * * *'")
        return value

    @field_validator("hf_token", "wandb_api_key", "pg_password", "review_token")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and (value != value.strip() or any(c.isspace() for c in value)):
            raise ValueError("contains whitespace (a copy-paste error?)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise ValueError("expected an existing directory (the catalog, lexicon and eval sets)")
        return value

    @field_validator("home", "dagster_home", "embedding_cache")
    @classmethod
    def _dir(cls, value: str | None) -> str | None:
        if value is not None:
            path = Path(value).expanduser()
            if path.exists() and not path.is_dir():
                raise ValueError("expected a directory, but it is a file")
        return value

    @field_validator("hf_training_script")
    @classmethod
    def _script(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError("expected an existing file")
        return value

    @model_validator(mode="after")
    def _one_world(self) -> Settings:
        check_world(self.job_backend, self.dataset_store, self.resolved_trainer)
        limit = max_campaign_size(self.resolved_trainer)
        if self.campaign_size > limit:
            raise ValueError(
                f"KOTONE_CAMPAIGN_SIZE={self.campaign_size} is more than the {self.resolved_trainer} trainer's "
                f"{limit} variants"
            )
        if self.state_store == "hf" and not self.hf_state_repo:
            raise ValueError(
                "KOTONE_STATE_STORE=hf keeps cycle documents and the champion registry in a Hugging Face dataset "
                "repo: set KOTONE_HF_STATE_REPO (e.g. my-org/kotone-state)"
            )
        if self.dagster_storage == "postgres":
            missing = [
                var for var, value in (("DAGSTER_PG_HOST", self.pg_host), ("DAGSTER_PG_DB", self.pg_db)) if not value
            ]
            if missing:
                raise ValueError(f"KOTONE_DAGSTER_STORAGE=postgres needs {' and '.join(missing)}")
        return self

    @property
    def resolved_trainer(self) -> Literal["local", "lora"]:
        """KOTONE_TRAINER, or the one trainer the job backend runs (HF Jobs run LoRA)."""
        return self.trainer or ("lora" if self.job_backend == "hf" else "local")

    @property
    def home_path(self) -> Path:
        """KOTONE_HOME (default ``./.kotone``) as an absolute path; nothing is created here."""
        return Path(self.home or DEFAULT_HOME).expanduser().absolute()

    def places(self) -> Places:
        """What the domain is handed: the data folder, the encoder and the folders of its caches."""
        home = self.home_path
        cache = Path(self.embedding_cache).expanduser() if self.embedding_cache else home / "cache" / "embeddings"
        return Places(
            data_dir=Path(self.data_dir).expanduser() if self.data_dir else REPOSITORY_DATA_DIR,
            encoder=self.encoder or "default",
            encoder_sha256=self.encoder_sha256.lower() if self.encoder_sha256 else None,
            embeddings_dir=cache,
            encoders_dir=home / "cache" / "encoders",
            hf_endpoint=self.hf_endpoint,
        )


def default(name: str) -> Any:
    """A setting's default, for the places that need one without reading the environment."""
    field = Settings.model_fields[name]
    return field.get_default(call_default_factory=True)


def _present(env: Mapping[str, str]) -> dict[str, str]:
    """Set variables only: empty (or blank) means unset, as everywhere in the project."""
    names = {field.alias for field in Settings.model_fields.values() if field.alias}
    return {
        name: env[name].strip() if name not in SECRETS else env[name] for name in names if env.get(name, "").strip()
    }


def _describe(error: dict[str, Any], values: Mapping[str, str]) -> str:
    loc = error.get("loc") or ()
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:  # a model-level check: the message names its variables
        return msg
    name = str(loc[0])
    field = next((f for f in Settings.model_fields.values() if f.alias == name), None)
    allowed = f" ({field.description})" if field is not None and field.description and "expected" not in msg else ""
    if error.get("type") == "string_pattern_mismatch" and field is not None and field.description:
        msg, allowed = f"expected {field.description}", ""
    if error.get("type") == "literal_error":
        msg = "not one of " + msg.removeprefix("Input should be ").replace("'", "")
    shown = "(value hidden)" if name in SECRETS else repr(values.get(name, ""))
    return f"{name}={shown}: {msg}{allowed}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Validate every setting; ``ConfigurationError`` lists each bad variable on its own line."""
    env = os.environ if env is None else env
    values = _present(env)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [_describe(e, values) for e in exc.errors(include_url=False)]
        raise ConfigurationError("bad configuration:\n  " + "\n  ".join(problems)) from None


def install_domain_places() -> None:
    """Hand the domain its places from the settings, read afresh on each ask (a changed variable is seen at
    once, as tests and long-lived processes need); run when the package is imported (``__init__.py``)."""
    install_places(lambda: load_settings().places())
