"""The loop's knobs as the cycle's steps take them: a value object built by ``LoopConfig.from_settings``.

Every field is a ``Settings`` field of the same name; its default, its environment variable and its
checks are written there once (``kotone_pipeline/settings.py``). Tests and benchmarks build one
directly (``LoopConfig(campaign_size=1)``) and get the same defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kotone_pipeline.domain.data.schemas import GateThresholds
from kotone_pipeline.settings import Settings, default


def _setting(name: str, **constraints: Any) -> Any:
    return Field(default_factory=lambda: default(name), **constraints)


class LoopConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    trainer: Literal["local", "lora"] = "local"  # Settings.resolved_trainer: the backend picks when unset
    campaign_size: int = _setting("campaign_size", ge=1)
    hard_dim_k: int = _setting("hard_dim_k", ge=1)
    forced_hard_dims: list[str] = _setting("forced_hard_dims")
    hard_dims_source: Literal["eval_rows", "wandb_failures"] = _setting("hard_dims_source")
    allow_stale: bool = _setting("allow_stale")
    wandb_timeout_s: int = _setting("wandb_timeout_s")
    add_ratio: float = _setting("add_ratio")
    replay_ratio: float = _setting("replay_ratio")
    split_seed: int = _setting("split_seed")
    job_timeout_s: int | None = _setting("job_timeout_s")
    job_max_steps: int | None = _setting("job_max_steps")
    job_max_train_rows: int | None = _setting("job_max_train_rows")
    job_max_predict_rows: int | None = _setting("job_max_predict_rows")
    min_improvement: float = _setting("min_improvement")
    max_dim_regression: float = _setting("max_dim_regression")
    max_human_regression: float = _setting("max_human_regression")
    min_json_valid_rate: float = _setting("min_json_valid_rate")
    max_holdout_regression: float = _setting("max_holdout_regression")
    field_min_rows: int = _setting("field_min_rows")
    field_share: float = _setting("field_share")
    reviewed_weight: float = _setting("reviewed_weight")
    min_people_rows: int = _setting("min_people_rows")
    lexicon_auto_accept: bool = _setting("lexicon_auto_accept")
    nightly_cron: str = _setting("nightly_cron")
    nightly_timezone: str = _setting("nightly_timezone")

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopConfig:
        """The value object the cycle's steps take, from the one settings model."""
        values = {name: getattr(settings, name) for name in cls.model_fields}
        return cls.model_validate({**values, "trainer": settings.resolved_trainer})

    def gate_thresholds(self) -> GateThresholds:
        return GateThresholds(
            min_improvement=self.min_improvement,
            max_dim_regression=self.max_dim_regression,
            min_json_valid_rate=self.min_json_valid_rate,
            max_human_regression=self.max_human_regression,
            max_holdout_regression=self.max_holdout_regression,
            field_min_rows=self.field_min_rows,
        )
