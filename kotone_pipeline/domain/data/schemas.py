"""Data contracts (docs/design.md § Data contracts). Strict: wrong values are rejected with a message naming
the field."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kotone_pipeline.domain.data.dims import DIMS, NEUTRAL_VALUE, to_scale10

SourceType = Literal["request_text", "rule_prompt"]
# People's labels: "human" (hand-written sets), "imported" (labelled data brought in), "reviewed" (the flywheel).
Origin = Literal["teacher", "augmented", "replay", "imported", "human", "reviewed"]
SplitName = Literal["train", "validation", "test"]

_WS = re.compile(r"\s+")


def _strict_dim_int(value: Any, dim: str, scale: int = 10) -> int:
    """Accept ints and integral floats; reject bools, strings, fractions, out-of-range values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{dim}: expected an integer 0..{scale}, got {type(value).__name__} {value!r}")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{dim}: expected an integer 0..{scale}, got {value!r}")
        if scale == 10 and not value.is_integer():
            raise ValueError(f"{dim}: expected an integer 0..10, got non-integral {value!r}")
    if not 0 <= value <= scale:
        raise ValueError(f"{dim}: {value!r} is out of range 0..{scale}")
    return int(value) if scale == 10 else value  # type: ignore[return-value]


class Vector(BaseModel):
    """Six named ints on the 0..10 scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    energy: int
    warmth: int
    brightness: int
    acousticness: int
    complexity: int
    nostalgia: int

    @field_validator(*DIMS, mode="before")
    @classmethod
    def _check_dim(cls, value: Any, info: Any) -> int:
        return _strict_dim_int(value, info.field_name)

    @classmethod
    def parse(cls, data: Any, scale: int = 10) -> Vector:
        """Validate a mapping; with ``scale=100`` convert 0..100 values half-up first."""
        if scale not in (10, 100):
            raise ValueError(f"scale must be 10 or 100, got {scale!r}")
        if not isinstance(data, dict):
            raise ValueError(f"vector: expected an object with the six dims, got {type(data).__name__}")
        missing = [d for d in DIMS if d not in data]
        if missing:
            raise ValueError(f"vector: missing dim(s) {', '.join(missing)}")
        extra = sorted(set(data) - set(DIMS))
        if extra:
            raise ValueError(f"vector: unknown field(s) {', '.join(extra)}")
        if scale == 100:
            data = {d: to_scale10(_strict_dim_int(data[d], d, scale=100)) for d in DIMS}
        return cls(**data)

    @classmethod
    def from_values(cls, values: tuple[int, ...] | list[int]) -> Vector:
        """Fast constructor for values already known to be valid ints in range (hot paths)."""
        return cls.model_construct(**dict(zip(DIMS, values, strict=True)))

    @classmethod
    def neutral(cls) -> Vector:
        return cls.from_values([NEUTRAL_VALUE] * len(DIMS))

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, d) for d in DIMS)

    def as_dict(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in DIMS}


def normalize_text(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def pair_id(source_type: str, text: str) -> str:
    """Stable id: hash of source_type + normalized text."""
    digest = hashlib.sha1(f"{source_type}\x1f{normalize_text(text)}".encode()).hexdigest()
    return f"p_{digest[:16]}"


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    group_id: str = Field(min_length=1)
    source_type: SourceType
    text: str = Field(min_length=1)
    vector: Vector
    parts: dict[str, str] | None = None
    origin: Origin = "teacher"
    cycle: str | None = None
    parent_id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("id") and "text" in data and "source_type" in data:
            data = {**data, "id": pair_id(str(data["source_type"]), str(data["text"]))}
        return data


class EvalRow(BaseModel):
    """One scored prediction. An invalid prediction is scored as the neutral vector, never skipped."""

    pair_id: str
    group_id: str
    source_type: SourceType
    text: str
    target: Vector
    prediction: Vector
    valid: bool
    abs_error: dict[str, int]
    row_mae: float
    latency_ms: float = 0.0
    raw_output: str | None = None
    parts: dict[str, str] | None = None


class EvalSummary(BaseModel):
    model_id: str
    dataset: str
    rows: int
    vector_mae: float
    mae_raw: float
    mse_norm: float
    per_dim_mae: dict[str, float]
    per_dim_r2: dict[str, float]
    mean_r2: float
    exact_match_rate: float
    within_one_rate: float
    json_valid_rate: float
    p50_latency_ms: float
    p95_latency_ms: float
    by_source_type: dict[str, float] = Field(default_factory=dict)


HardDimSource = Literal["eval_rows", "wandb_failures", "forced", "reviewed"]


class FailureExample(BaseModel):
    pair_id: str
    source_type: SourceType
    text: str
    target: Vector
    prediction: Vector
    row_mae: float


class HardDimReport(BaseModel):
    focus: list[str]
    k: int
    by_dim: dict[str, float]
    source: HardDimSource
    top_failures: list[FailureExample]
    eval_model_id: str = ""


class DimStats(BaseModel):
    mean: float
    min: int
    max: int


class SplitStats(BaseModel):
    counts: dict[str, dict[str, dict[str, int]]]  # split -> source_type -> origin -> rows
    rows: dict[str, int]
    groups: dict[str, int]
    dim_stats: dict[str, dict[str, DimStats]]  # split -> dim -> stats
    data_hash: str
    seed: int
    ratios: tuple[float, float, float]


class LoraHyperParams(BaseModel):
    """LLM LoRA SFT hyper-parameters (docs/design.md § Next hyper-parameters)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = 2e-5
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    epochs: int = 2
    batch_size: int = 2
    grad_accum: int = 8
    max_length: int = 768


class LocalHyperParams(BaseModel):
    """Hyper-parameters of the local scikit-learn trainer."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = 0.3
    word_ngram_max: int = Field(default=2, ge=1, le=3)
    char_ngram_max: int = Field(default=5, ge=2, le=6)
    min_df: int = Field(default=1, ge=1)
    use_char: bool = True
    # Pretrained sentence-encoder features for request texts (docs/design.md § Local model), scaled against
    # the TF-IDF blocks.
    use_encoder: bool = True
    encoder_weight: float = Field(default=1.0, gt=0, le=10)
    # The concept lexicon's reading of a request (the label rule's offsets per dim) as features.
    use_lexicon: bool = True
    lexicon_weight: float = Field(default=1.0, gt=0, le=10)
    # People's rows (origins human/imported/reviewed) train a separate correction once a source type has
    # at least this many (issue 23); below it they are ordinary training rows, as before.
    min_people_rows: int = Field(default=20, ge=2)


class HyperParamDecision(BaseModel):
    trainer: Literal["lora", "local"]
    current: dict[str, Any]
    next: dict[str, Any]
    patch: dict[str, Any]
    reasons: list[str]


class GateThresholds(BaseModel):
    min_improvement: float = 0.005
    max_dim_regression: float = 0.15
    min_json_valid_rate: float = 0.98
    max_human_regression: float = 0.05
    max_holdout_regression: float = 0.1  # once the field set decides, the holdout is a guard
    field_min_rows: int = 30  # reviewed requests the field set needs before it decides


class GateDecision(BaseModel):
    promote: bool
    forced: bool = False
    candidate_run_id: str | None
    candidate_model_ref: str | None = None
    reference_kind: Literal["champion", "baseline"]
    reference_id: str
    candidate_holdout_mae: float | None
    reference_holdout_mae: float
    per_dim_delta: dict[str, float] = Field(default_factory=dict)
    json_valid_rate: float | None = None
    candidate_human_mae: float | None = None
    reference_human_mae: float | None = None
    primary: Literal["holdout", "field"] = "holdout"  # the set whose improvement decides
    field_rows: int = 0
    candidate_field_mae: float | None = None
    reference_field_mae: float | None = None
    thresholds: GateThresholds = Field(default_factory=GateThresholds)
    reasons: list[str]
