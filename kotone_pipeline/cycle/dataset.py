"""The training data of a cycle: ``augmented_pairs`` (new pairs on the hard dims, plus replay) and
``split_dataset`` (the leak-checked split, published as a dataset version)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kotone_pipeline.cycle.base import BaseData, load_base
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import (
    AugmentedPairsDoc,
    EvalSummaryDoc,
    HardDimsDoc,
    SplitDatasetDoc,
)
from kotone_pipeline.cycle.evaluation import cycle_base
from kotone_pipeline.cycle.flywheel import (
    reviewed_rows,
)
from kotone_pipeline.cycle.tracking import (
    log_dataset,
)
from kotone_pipeline.domain.data.schemas import (
    Pair,
    normalize_text,
)
from kotone_pipeline.domain.loop.augment import augment
from kotone_pipeline.domain.loop.split import check_leakage, compute_stats, split_pairs
from kotone_pipeline.domain.requests.composer import Composer
from kotone_pipeline.domain.requests.lexicon import default_lexicon
from kotone_pipeline.domain.requests.lexicon_patch import lexicon_version, stamp_lexicon_version
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetRef, DatasetStore, published_splits
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.tracker import Tracker


class LeakageError(RuntimeError):
    pass


# --- augmented_pairs -------------------------------------------------------------------------------


def _earlier_augmented(artifacts: CycleArtifacts, earlier_cycles: Sequence[str]) -> list[Pair]:
    pairs: list[Pair] = []
    for cycle in earlier_cycles:
        if artifacts.has_rows(cycle, "augmented_pairs"):
            pairs.extend(artifacts.read_pairs(cycle, "augmented_pairs"))
    return pairs


@dataclass
class AugmentStep:
    pairs: list[Pair]
    counts: dict[str, Any]


def step_augmented_pairs(
    artifacts: CycleArtifacts, config: LoopConfig, cycle_id: str, earlier_cycles: Sequence[str]
) -> AugmentStep:
    """New request texts written for vectors pushed along the hard dims; replay rows for the rest."""
    base = load_base(artifacts, config.split_seed)
    eval_doc = artifacts.read(cycle_id, EvalSummaryDoc)
    report = artifacts.read(cycle_id, HardDimsDoc)
    probe_rows = artifacts.read_eval_rows(cycle_id, "eval_rows_probe")
    if report.source == "reviewed":
        # People's requests the model got wrong seed the new requests first (their vectors, new text).
        probe_rows = [*artifacts.read_eval_rows(cycle_id, "eval_rows_reviewed"), *probe_rows]
    failing = sorted((r for r in probe_rows if r.row_mae > 0), key=lambda r: (-r.row_mae, r.pair_id))
    existing = {p.text for p in (*base.teacher_pairs, *base.probe, *base.holdout)}
    existing |= {p.text for p in _earlier_augmented(artifacts, earlier_cycles)}
    # The lexicon in effect: the committed one plus the patch entries a person (or auto-accept) accepted. It
    # writes and labels the new requests; each row records its version, so the dataset version follows it.
    lexicon, version = LexiconStore.beside(artifacts.store).current()
    result = augment(
        failing,
        base.base_train,
        report.focus,
        n_train_base=len(base.base_train),
        cycle_id=cycle_id,
        eval_run_id=eval_doc.eval_id,
        existing_texts=existing,
        add_ratio=config.add_ratio,
        replay_ratio=config.replay_ratio,
        composer=Composer(lexicon),
    )
    pairs = stamp_lexicon_version(result.pairs, version)
    artifacts.write_rows(cycle_id, "augmented_pairs", pairs)
    counts = dict(result.counts)
    doc = AugmentedPairsDoc(cycle_id=cycle_id, counts=counts, focus=report.focus, lexicon_version=version)
    artifacts.write(cycle_id, doc)
    return AugmentStep(pairs, counts)


# --- split_dataset ---------------------------------------------------------------------------------


def eval_set_leaks(splits: dict[str, list[Pair]], base: BaseData) -> list[str]:
    """Frozen eval groups and texts (the field set's too) must never reach training data."""
    eval_texts = {normalize_text(p.text) for p in (*base.probe, *base.holdout, *base.human, *base.field)}
    problems = []
    for name, pairs in splits.items():
        for pair in pairs:
            if pair.group_id in base.eval_group_ids:
                problems.append(f"{name}: eval group {pair.group_id} in training data")
            elif normalize_text(pair.text) in eval_texts:
                problems.append(f"{name}: eval text of {pair.id} in training data")
    return problems


@dataclass
class SplitStep:
    dataset: DatasetRef
    stats: dict[str, Any]
    rows: dict[str, int]
    tracking: dict[str, str] = field(default_factory=dict)  # the W&B dataset artifact and its run


def step_split_dataset(
    artifacts: CycleArtifacts,
    store: DatasetStore,
    config: LoopConfig,
    cycle_id: str,
    earlier_cycles: Sequence[str],
    tracker: Tracker | None = None,
) -> SplitStep:
    """Base + every cycle's augmented rows so far, split group-aware, published as one immutable version
    (and, with a tracker, logged as a W&B ``dataset`` artifact that the training runs then use)."""
    base = cycle_base(artifacts, config, cycle_id, earlier_cycles)
    reviewed = reviewed_rows(artifacts, [*earlier_cycles, cycle_id], "training")
    pairs = [
        *base.teacher_pairs,
        *_earlier_augmented(artifacts, earlier_cycles),
        *artifacts.read_pairs(cycle_id, "augmented_pairs"),
    ]
    # Each rule-labelled row records the lexicon that labelled it: augmented rows were stamped with the lexicon
    # in effect when written; the rest (the base set) came from the committed one.
    lexicon = lexicon_version(default_lexicon())
    result = split_pairs(stamp_lexicon_version(pairs, lexicon), seed=config.split_seed)
    # People's labels are scarce and are measured on the field set, never on validation or test: every
    # reviewed training-side row trains (a text the teacher's rows already hold is left out: no leak).
    taken = {normalize_text(p.text) for p in pairs}
    people = [p for p in reviewed if normalize_text(p.text) not in taken]
    if people:
        result.splits["train"] = [*result.splits["train"], *people]
        result.stats = compute_stats(result.splits, config.split_seed)
    in_effect = LexiconStore.beside(artifacts.store).current()[1]
    problems = check_leakage(result.splits) + eval_set_leaks(result.splits, base)
    if problems:
        raise LeakageError(f"split of cycle {cycle_id} leaks: " + "; ".join(problems[:10]))
    splits = {**result.splits, "holdout": base.holdout, "probe": base.probe, "human": base.human, "field": base.field}
    stats = result.stats.model_dump(mode="json")
    card = {
        "cycle_id": cycle_id,
        "split_seed": config.split_seed,
        "stats": stats,
        "sources": {
            "teacher": len(base.teacher_pairs),
            "earlier_cycles": list(earlier_cycles),
            "reviewed_training": len(people),
            "field": len(base.field),
        },
        "lexicon_version": {"committed": lexicon, "in_effect": in_effect},
    }
    ref = store.publish(cycle_id, splits, card)
    rows = {name: len(splits[name]) for name in published_splits(splits)}
    doc = SplitDatasetDoc(cycle_id=cycle_id, dataset=ref, stats=result.stats, rows=rows)
    if tracker is not None:
        doc.tracking = log_dataset(tracker, cycle_id, doc)
    artifacts.write(cycle_id, doc)
    return SplitStep(ref, stats, rows, doc.tracking)
