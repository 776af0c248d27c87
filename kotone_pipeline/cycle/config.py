"""Loop settings (DESIGN §4 defaults), read from ``KOTONE_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.domain.hparams import max_campaign_size
from kotone_pipeline.domain.schemas import GateThresholds

_TRUE = {"1", "true", "yes", "on"}


class LoopConfig(BaseModel):
    trainer: str = Field(default="local", description="local (scikit-learn) or lora (LLM SFT on HF Jobs)")
    campaign_size: int = Field(default=2, ge=1, le=16, description="training runs per cycle")
    hard_dim_k: int = Field(default=2, ge=1, le=6)
    forced_hard_dims: list[str] = Field(default_factory=list)
    hard_dims_source: str = Field(default="eval_rows", description="eval_rows or wandb_failures")
    allow_stale: bool = False
    wandb_timeout_s: int = Field(default=20, ge=1, description="bound on one W&B API lookup (hard dims)")
    add_ratio: float = 0.2
    replay_ratio: float = 0.15
    split_seed: int = 20261125
    job_timeout_s: int | None = Field(
        default=None, ge=60, description="job timeout; unset: derived from data size and flavor (domain.job_timeout)"
    )
    job_max_steps: int | None = Field(default=None, ge=1, description="stop LoRA training after N steps (smoke)")
    job_max_train_rows: int | None = Field(default=None, ge=1, description="train on the first N pairs (smoke)")
    job_max_predict_rows: int | None = Field(
        default=None, ge=1, description="predict the first N pairs of each eval split (smoke)"
    )
    min_improvement: float = 0.005
    max_dim_regression: float = 0.15
    max_human_regression: float = Field(
        default=0.05, ge=0, description="how much worse than the champion on the hand-written human set"
    )
    min_json_valid_rate: float = 0.98
    nightly_cron: str = "0 2 * * *"
    nightly_timezone: str = "UTC"

    @field_validator("trainer")
    @classmethod
    def _trainer(cls, value: str) -> str:
        if value not in {"local", "lora"}:
            raise ValueError(f"trainer must be 'local' or 'lora', got {value!r}")
        return value

    @field_validator("hard_dims_source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value not in {"eval_rows", "wandb_failures"}:
            raise ValueError(f"hard_dims_source must be 'eval_rows' or 'wandb_failures', got {value!r}")
        return value

    @field_validator("forced_hard_dims")
    @classmethod
    def _forced(cls, value: list[str]) -> list[str]:
        unknown = [d for d in value if d not in DIMS]
        if unknown:
            raise ValueError(f"unknown dim(s) in forced_hard_dims: {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _campaign_fits_trainer(self) -> LoopConfig:
        limit = max_campaign_size(self.trainer)
        if self.campaign_size > limit:
            raise ValueError(
                f"campaign_size {self.campaign_size} is more than the {self.trainer} trainer's {limit} variants"
            )
        return self

    def gate_thresholds(self) -> GateThresholds:
        return GateThresholds(
            min_improvement=self.min_improvement,
            max_dim_regression=self.max_dim_regression,
            min_json_valid_rate=self.min_json_valid_rate,
            max_human_regression=self.max_human_regression,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoopConfig:
        env = os.environ if env is None else env
        names = {
            "trainer": "KOTONE_TRAINER",
            "campaign_size": "KOTONE_CAMPAIGN_SIZE",
            "hard_dim_k": "KOTONE_HARD_DIM_K",
            "hard_dims_source": "KOTONE_HARD_DIMS_SOURCE",
            "wandb_timeout_s": "KOTONE_WANDB_TIMEOUT_S",
            "add_ratio": "KOTONE_ADD_RATIO",
            "replay_ratio": "KOTONE_REPLAY_RATIO",
            "split_seed": "KOTONE_SPLIT_SEED",
            "job_timeout_s": "KOTONE_JOB_TIMEOUT_S",
            "job_max_steps": "KOTONE_JOB_MAX_STEPS",
            "job_max_train_rows": "KOTONE_JOB_MAX_TRAIN_ROWS",
            "job_max_predict_rows": "KOTONE_JOB_MAX_PREDICT_ROWS",
            "min_improvement": "KOTONE_MIN_IMPROVEMENT",
            "max_dim_regression": "KOTONE_MAX_DIM_REGRESSION",
            "max_human_regression": "KOTONE_MAX_HUMAN_REGRESSION",
            "nightly_cron": "KOTONE_NIGHTLY_CRON",
            "nightly_timezone": "KOTONE_NIGHTLY_TIMEZONE",
        }
        values: dict[str, object] = {field: env[var] for field, var in names.items() if env.get(var)}
        if env.get("KOTONE_FORCED_HARD_DIMS"):
            values["forced_hard_dims"] = [d.strip() for d in env["KOTONE_FORCED_HARD_DIMS"].split(",") if d.strip()]
        if env.get("KOTONE_ALLOW_STALE"):
            values["allow_stale"] = env["KOTONE_ALLOW_STALE"].strip().lower() in _TRUE
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            variables = {**names, "forced_hard_dims": "KOTONE_FORCED_HARD_DIMS", "allow_stale": "KOTONE_ALLOW_STALE"}
            problems = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                where = variables.get(field, "the KOTONE_* settings")
                problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
            raise ValueError("bad configuration: " + "; ".join(problems)) from None
