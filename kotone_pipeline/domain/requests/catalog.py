"""The parts catalog (docs/design.md § Dims): 45 parts, one slot each, some dims defined on 0..100."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from kotone_pipeline.domain.data.dims import DIMS, SLOTS
from kotone_pipeline.domain.data.jsonl import describe_validation_error
from kotone_pipeline.domain.data.paths import data_dir

CATALOG_FILE = "catalog.json"
NEUTRAL_VALUE_100 = 50.0


class CatalogError(ValueError):
    """The catalog file is missing or invalid; the message names the file."""


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    part_id: str = Field(pattern=r"^[a-z0-9_]+$")
    slot: str
    name: str = Field(min_length=1)
    tags: tuple[str, ...] = ()
    description: str = Field(min_length=1)
    values: dict[str, int | None]

    @field_validator("slot")
    @classmethod
    def _known_slot(cls, slot: str) -> str:
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r} (expected one of {', '.join(SLOTS)})")
        return slot

    @field_validator("values")
    @classmethod
    def _values_0_100(cls, values: dict[str, int | None]) -> dict[str, int | None]:
        missing = [d for d in DIMS if d not in values]
        extra = sorted(set(values) - set(DIMS))
        if missing or extra:
            raise ValueError(f"values must name exactly the six dims (missing {missing}, unknown {extra})")
        for dim, value in values.items():
            if value is not None and not 0 <= value <= 100:
                raise ValueError(f"{dim}: {value} is out of range 0..100")
        # Keep DIMS order so serialisation and iteration are stable.
        return {d: values[d] for d in DIMS}


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    parts: tuple[Part, ...]
    _by_id: dict[str, Part] = PrivateAttr(default_factory=dict)
    _by_slot: dict[str, tuple[Part, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_integrity(self) -> Catalog:
        seen: set[str] = set()
        duplicates = sorted({p.part_id for p in self.parts if p.part_id in seen or seen.add(p.part_id)})
        if duplicates:
            raise ValueError(f"duplicate part id(s): {', '.join(duplicates)}")
        empty = [s for s in SLOTS if not any(p.slot == s for p in self.parts)]
        if empty:
            raise ValueError(f"no part for slot(s): {', '.join(empty)}")
        return self

    def model_post_init(self, _context: object) -> None:
        self._by_id = {p.part_id: p for p in self.parts}
        self._by_slot = {s: tuple(p for p in self.parts if p.slot == s) for s in SLOTS}

    @property
    def by_slot(self) -> dict[str, tuple[Part, ...]]:
        """slot -> its parts, in catalog order, for every slot of SLOTS."""
        return self._by_slot

    def get(self, part_id: str) -> Part | None:
        return self._by_id.get(part_id)

    def __contains__(self, part_id: object) -> bool:
        return part_id in self._by_id


def default_catalog_path() -> Path:
    return data_dir() / CATALOG_FILE


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Read and validate the catalog; any problem raises ``CatalogError`` naming the file."""
    path = Path(path) if path is not None else default_catalog_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: catalog file not found") from exc
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read catalog ({exc})") from exc
    if not isinstance(raw, dict) or "parts" not in raw:
        raise CatalogError(f"{path}: expected an object with a 'parts' list")
    try:
        return Catalog(parts=raw["parts"])
    except ValidationError as exc:
        raise CatalogError(f"{path}: invalid catalog: {describe_validation_error(exc)}") from exc


def mean_vector_100(parts: Iterable[Part]) -> list[float]:
    """Per dim: the mean of the values the parts define, or 50 when none does (docs/design.md § Teacher)."""
    parts = list(parts)
    means = []
    for dim in DIMS:
        defined = [p.values[dim] for p in parts if p.values[dim] is not None]
        means.append(sum(defined) / len(defined) if defined else NEUTRAL_VALUE_100)
    return means
