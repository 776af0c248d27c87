"""Committed teacher parameters, the base set and the frozen eval sets (docs/design.md § Teacher, § Frozen eval sets).

The eval sets (probe, holdout) are generated from their own seeds and combination pools and are
committed; the base set is filtered against their texts, so it never shares a group or a text
with them whatever its size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kotone_pipeline.domain.data.jsonl import describe_validation_error, read_models, write_jsonl
from kotone_pipeline.domain.data.paths import data_dir
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.loop.quality import QualityReport, filter_rows
from kotone_pipeline.domain.requests.catalog import Catalog, load_catalog
from kotone_pipeline.domain.requests.composer import DEFAULT_JA_SHARE
from kotone_pipeline.domain.requests.teacher import NOISE_100, POOLS, generate_rows

GENERATION_FILE = "generation.json"
EvalSetName = Literal["probe", "holdout"]
EVAL_SETS: tuple[str, ...] = ("probe", "holdout")


class GenerationError(ValueError):
    """generation.json is missing or invalid; the message names the file."""


class SetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    n_groups: int = Field(ge=1)
    prefix: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    pool: str
    requests_per_group: int = Field(default=1, ge=0, le=20)

    @model_validator(mode="after")
    def _known_pool(self) -> SetParams:
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        return self


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_100: float = Field(default=NOISE_100, ge=0, le=50)
    ja_share: float = Field(default=DEFAULT_JA_SHARE, ge=0, le=1)
    base: SetParams
    probe: SetParams
    holdout: SetParams

    @model_validator(mode="after")
    def _distinct_sets(self) -> GenerationParams:
        sets = (self.base, self.probe, self.holdout)
        if len({s.prefix for s in sets}) != 3:
            raise ValueError("base, probe and holdout need distinct group prefixes")
        if len({s.pool for s in sets}) != 3:
            raise ValueError("base, probe and holdout need distinct combination pools")
        return self


def generation_path() -> Path:
    return data_dir() / GENERATION_FILE


def eval_set_path(name: str, directory: Path | None = None) -> Path:
    if name not in EVAL_SETS:
        raise ValueError(f"unknown eval set {name!r} (expected one of {', '.join(EVAL_SETS)})")
    return (directory if directory is not None else data_dir() / "eval") / f"{name}.jsonl"


def load_generation_params(path: Path | str | None = None) -> GenerationParams:
    path = Path(path) if path is not None else generation_path()
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GenerationError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise GenerationError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise GenerationError(f"{path}: cannot read ({exc})") from exc
    try:
        return GenerationParams.model_validate(raw)
    except ValidationError as exc:
        raise GenerationError(f"{path}: {describe_validation_error(exc)}") from exc


def _generate(
    params: SetParams, generation: GenerationParams, catalog: Catalog, existing: set[str]
) -> tuple[list[Pair], QualityReport]:
    rows = generate_rows(
        catalog,
        params.n_groups,
        params.seed,
        params.prefix,
        pool=params.pool,
        noise_100=generation.noise_100,
        requests_per_group=params.requests_per_group,
        ja_share=generation.ja_share,
    )
    kept, report = filter_rows(rows, existing, catalog=catalog)
    # Small sets: validate every row here, the boundary where generated data becomes a dataset.
    return [Pair.model_validate(row) for row in kept], report


def build_eval_sets(
    params: GenerationParams | None = None, catalog: Catalog | None = None
) -> dict[str, tuple[list[Pair], QualityReport]]:
    """probe, then holdout deduplicated against probe's texts; independent of the base set."""
    params = params if params is not None else load_generation_params()
    catalog = catalog if catalog is not None else load_catalog()
    taken: set[str] = set()
    built: dict[str, tuple[list[Pair], QualityReport]] = {}
    for name in EVAL_SETS:
        pairs, report = _generate(getattr(params, name), params, catalog, taken)
        taken.update(p.text for p in pairs)
        built[name] = (pairs, report)
    return built


def build_base_set(
    params: GenerationParams | None = None, catalog: Catalog | None = None
) -> tuple[list[Pair], QualityReport]:
    """The base teacher set, with no text shared with the (regenerated, identical) eval sets."""
    params = params if params is not None else load_generation_params()
    catalog = catalog if catalog is not None else load_catalog()
    eval_texts = {p.text for pairs, _ in build_eval_sets(params, catalog).values() for p in pairs}
    return _generate(params.base, params, catalog, eval_texts)


def write_eval_sets(directory: Path | None = None, params: GenerationParams | None = None) -> dict[str, Path]:
    """(Re)generate ``eval/{probe,holdout}.jsonl`` atomically; returns the written paths."""
    written: dict[str, Path] = {}
    for name, (pairs, _) in build_eval_sets(params).items():
        path = eval_set_path(name, directory)
        write_jsonl(path, pairs)
        written[name] = path
    return written


HUMAN_SET = "human"


def human_set_path(directory: Path | None = None) -> Path:
    return (directory if directory is not None else data_dir() / "eval") / f"{HUMAN_SET}.jsonl"


def load_human_set(directory: Path | None = None) -> list[Pair]:
    """The hand-written human set (docs/design.md § Teacher): written and labelled by people, never generated, never
    trained on, never mined; every cycle scores the champion and the baselines on it."""
    return read_models(human_set_path(directory), Pair).rows


def load_eval_set(name: EvalSetName | str, directory: Path | None = None) -> list[Pair]:
    """Strict read of a frozen eval set: any bad line raises DataFileError naming file and line."""
    return read_models(eval_set_path(name, directory), Pair).rows
