"""The unpartitioned inputs of every cycle: catalog, base teacher pairs, frozen eval sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from kotone_pipeline.domain.data.base_data import build_base_set, eval_set_path, human_set_path
from kotone_pipeline.domain.data.jsonl import read_models, write_json, write_jsonl
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.loop.quality import QualityReport
from kotone_pipeline.domain.loop.split import split_pairs
from kotone_pipeline.domain.requests.catalog import Catalog, load_catalog
from kotone_pipeline.services.artifacts import CycleArtifacts

TEACHER_PAIRS_FILE = "teacher_pairs.jsonl"


@dataclass
class BaseData:
    catalog: Catalog
    teacher_pairs: list[Pair]
    probe: list[Pair]
    holdout: list[Pair]
    split_seed: int
    human: list[Pair]
    # The field set of the cycle at hand (reviewed requests people sent): set by the cycle's steps.
    field: list[Pair] = field(default_factory=list)

    @cached_property
    def base_train(self) -> list[Pair]:
        """The teacher rows that the hash-stable split puts in train (augmentation's fallback source)."""
        return split_pairs(self.teacher_pairs, seed=self.split_seed).splits["train"]

    @cached_property
    def eval_group_ids(self) -> set[str]:
        return {p.group_id for p in (*self.probe, *self.holdout, *self.human, *self.field)}

    def eval_sets(self) -> tuple[tuple[str, list[Pair]], ...]:
        """The sets every model is scored on, in report order (the field set once it has rows)."""
        sets = (("probe", self.probe), ("holdout", self.holdout), ("human", self.human))
        return (*sets, ("field", self.field)) if self.field else sets


def write_teacher_pairs(artifacts: CycleArtifacts) -> tuple[list[Pair], QualityReport]:
    pairs, report = build_base_set()
    write_jsonl(artifacts.base_dir / TEACHER_PAIRS_FILE, pairs)
    write_json(artifacts.base_dir / "quality_report.json", report.as_dict())
    return pairs, report


def load_base(artifacts: CycleArtifacts, split_seed: int) -> BaseData:
    """Read the base set written by the ``teacher_pairs`` asset; build it when it is missing.

    Generation is deterministic from committed parameters, so building here gives the same file the
    asset would have written.
    """
    path = artifacts.base_dir / TEACHER_PAIRS_FILE
    pairs = _read_pairs(path) if path.is_file() else write_teacher_pairs(artifacts)[0]
    return BaseData(
        catalog=load_catalog(),
        teacher_pairs=pairs,
        probe=_read_pairs(eval_set_path("probe")),
        holdout=_read_pairs(eval_set_path("holdout")),
        split_seed=split_seed,
        human=_read_pairs(human_set_path()),
    )


def _read_pairs(path: Path) -> list[Pair]:
    """A strict read of a pairs file, once per process while the file stays the same: every step of a
    cycle run loads the base data, ~6,400 validated rows (a new list each time: callers may change it)."""
    stat = path.stat()
    return list(_read_pairs_cached(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _read_pairs_cached(path: str, mtime_ns: int, size: int) -> tuple[Pair, ...]:
    return tuple(read_models(Path(path), Pair).rows)
