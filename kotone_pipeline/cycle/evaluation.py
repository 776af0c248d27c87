"""The cycle's first stages: ``eval_summary`` (the champion and the baselines on the frozen eval sets) and
``hard_dims`` (the dims the next model should work on, from the eval rows or from W&B failures)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kotone_pipeline.cycle.base import BaseData, load_base
from kotone_pipeline.cycle.champion_eval import BASELINE_NAMES, champion_before, evaluate_champion, load_predictor
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import (
    EvalSummaryDoc,
    HardDimsDoc,
)
from kotone_pipeline.cycle.flywheel import (
    TRAINING_SIDE_FILE,
    reviewed_rows,
)
from kotone_pipeline.cycle.tracking import (
    log_eval,
    trace_current_model,
)
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import (
    EvalRow,
    EvalSummary,
    FailureExample,
)
from kotone_pipeline.domain.loop.hard_dims import find_hard_dims, per_dim_mae
from kotone_pipeline.domain.model.baselines import ConstantBaseline, RuleBaseline
from kotone_pipeline.domain.model.metrics import evaluate
from kotone_pipeline.domain.model.predictor import Predictor
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.services.tracker import Tracker


def _stable_id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12]


# --- eval_summary ----------------------------------------------------------------------------------


@dataclass
class EvalStep:
    eval_id: str
    current_model: str
    champion: Champion | None
    summaries: dict[str, dict[str, EvalSummary]]  # model name -> dataset -> summary
    probe_rows: list[EvalRow]
    holdout_rows: list[EvalRow]
    tracking: dict[str, Any] = field(default_factory=dict)


def cycle_base(artifacts: CycleArtifacts, config: LoopConfig, cycle_id: str, earlier_cycles: Sequence[str]) -> BaseData:
    """The base data with this cycle's field set: the reviewed requests routed there up to this cycle."""
    base = load_base(artifacts, config.split_seed)
    base.field = reviewed_rows(artifacts, [*earlier_cycles, cycle_id], "field")
    return base


def step_eval_summary(
    artifacts: CycleArtifacts,
    registry: ChampionRegistry,
    config: LoopConfig,
    cycle_id: str,
    tracker: Tracker | None = None,
    earlier_cycles: Sequence[str] = (),
) -> EvalStep:
    """Evaluate the champion (or, while there is none, the baselines) on the frozen probe and holdout sets,
    the hand-written human set and, once people reviewed served requests, the field set."""
    base = cycle_base(artifacts, config, cycle_id, earlier_cycles)
    constant = ConstantBaseline(base.base_train)
    models: dict[str, Predictor] = {
        ConstantBaseline.model_id: constant,
        RuleBaseline.model_id: RuleBaseline(base.catalog, fallback=constant.vector),
    }
    champion = champion_before(artifacts, registry, cycle_id)
    summaries: dict[str, dict[str, EvalSummary]] = {}
    rows: dict[str, dict[str, list[EvalRow]]] = {}
    for name, predictor in models.items():
        for dataset, pairs in base.eval_sets():
            summary, eval_rows = evaluate(predictor, pairs, dataset=dataset)
            summaries.setdefault(name, {})[dataset] = summary
            rows.setdefault(name, {})[dataset] = eval_rows
    model_ids = {name: predictor.model_id for name, predictor in models.items()}
    # Weave traces the evaluated model online only; otherwise recorded predictions are enough.
    need_predictor = tracker is not None and getattr(tracker, "mode", "disabled") == "online"
    champion_eval = (
        evaluate_champion(artifacts, champion, base, need_predictor=need_predictor) if champion is not None else None
    )
    if champion_eval is not None:
        summaries["champion"], rows["champion"] = champion_eval.summaries, champion_eval.rows
        # The registry's id ("cycle/run") names the champion everywhere people read it (hard dims, the
        # playbook); the id a trainer stores inside its model ("local:output") means nothing to them.
        model_ids["champion"] = champion.model_id
        if champion_eval.predictor is not None:
            models["champion"] = champion_eval.predictor
    if champion is not None:
        current = "champion"
    else:
        current = min(BASELINE_NAMES, key=lambda n: summaries[n]["probe"].vector_mae)
    # Not the model path: the same cycle must get the same seed on any machine or KOTONE_HOME.
    eval_id = _stable_id(cycle_id, current, champion.model_id if champion else "")
    tracking: dict[str, Any] = {}
    if tracker is not None:
        tracking = log_eval(tracker, cycle_id, current, summaries, rows[current]["probe"])
        # None: a champion scored from recorded predictions (tracing then says why it did not trace).
        tracking.update(trace_current_model(tracker, models.get(current), base.probe, artifacts.home))
    artifacts.write_rows(cycle_id, "eval_rows_probe", rows[current]["probe"])
    reviewed = _score_reviewed(artifacts, cycle_id, models.get(current), champion if current == "champion" else None)
    if reviewed is not None:
        artifacts.write_rows(cycle_id, "eval_rows_reviewed", reviewed)
    artifacts.write_rows(cycle_id, "eval_rows_holdout", rows[current]["holdout"])
    artifacts.write(
        cycle_id,
        EvalSummaryDoc(
            cycle_id=cycle_id,
            eval_id=eval_id,
            current_model=current,
            current_model_id=model_ids[current],
            champion=champion,
            champion_eval=champion_eval.how if champion_eval else None,
            summaries=summaries,
            tracking=tracking,
        ),
    )
    return EvalStep(eval_id, current, champion, summaries, rows[current]["probe"], rows[current]["holdout"], tracking)


def _score_reviewed(
    artifacts: CycleArtifacts, cycle_id: str, predictor: Predictor | None, champion: Champion | None
) -> list[EvalRow] | None:
    """The current model on this cycle's new training-side reviewed requests (people's text it has not
    trained on): where hard dims are mined once people review. None when there are none, or the model is
    remote and recorded no predictions for them."""
    if not artifacts.has_rows(cycle_id, TRAINING_SIDE_FILE):
        return None
    pairs = artifacts.read_pairs(cycle_id, TRAINING_SIDE_FILE)
    if not pairs:
        return None
    if predictor is None and champion is not None and Path(champion.model_uri).exists():
        predictor = load_predictor(champion.model_uri)
    if predictor is None:
        return None
    _, rows = evaluate(predictor, pairs, dataset="reviewed")
    return rows


# --- hard_dims -------------------------------------------------------------------------------------

MIN_REVIEWED_FOR_FOCUS = 5  # new training-side reviewed requests before people's errors pick the focus


def failures_as_rows(failures: Sequence[FailureExample]) -> list[EvalRow]:
    """Tracker failure rows in the shape the hard-dim ranking reads."""
    rows = []
    for f in failures:
        errors = {d: abs(getattr(f.target, d) - getattr(f.prediction, d)) for d in DIMS}
        rows.append(
            EvalRow(
                pair_id=f.pair_id,
                group_id=f.pair_id,
                source_type=f.source_type,
                text=f.text,
                target=f.target,
                prediction=f.prediction,
                valid=True,
                abs_error=errors,
                row_mae=sum(errors.values()) / len(DIMS),
            )
        )
    return rows


def step_hard_dims(
    artifacts: CycleArtifacts,
    config: LoopConfig,
    cycle_id: str,
    failures: Sequence[FailureExample] | None = None,
    extra: dict[str, Any] | None = None,
) -> HardDimsDoc:
    """Per-dim MAE on the probe rows, or on the tracker's failure rows when given; focus on the top-k.
    Once people reviewed enough served requests (``MIN_REVIEWED_FOR_FOCUS`` new training-side rows), the
    focus is where the current model is worst on *their* text: on the teacher's own text it is already
    near the labeller's noise, the headroom is on text people write. The probe ranking is kept beside it.
    ``extra``: where the failure rows came from (``FailureFetch.as_metadata()``)."""
    doc = artifacts.read(cycle_id, EvalSummaryDoc)
    probe_by_dim: dict[str, float] = {}
    reviewed = (
        artifacts.read_eval_rows(cycle_id, "eval_rows_reviewed")
        if artifacts.has_rows(cycle_id, "eval_rows_reviewed")
        else []
    )
    if failures is not None:
        rows, source = failures_as_rows(failures), "wandb_failures"
    elif len(reviewed) >= MIN_REVIEWED_FOR_FOCUS:
        rows, source = reviewed, "reviewed"
        probe_by_dim = per_dim_mae(artifacts.read_eval_rows(cycle_id, "eval_rows_probe"))
    else:
        rows, source = artifacts.read_eval_rows(cycle_id, "eval_rows_probe"), "eval_rows"
    report = find_hard_dims(
        rows,
        k=config.hard_dim_k,
        forced=config.forced_hard_dims or None,
        model_id=doc.current_model_id,
        source=source,  # type: ignore[arg-type]
    )
    what = {"eval_rows": "probe", "reviewed": "reviewed requests"}.get(report.source, report.source)
    hard = HardDimsDoc.model_validate(
        {
            **report.model_dump(),
            **(extra or {}),
            "focus_sources": dict.fromkeys(report.focus, what),
            "reviewed_rows": len(reviewed),
            "probe_by_dim": probe_by_dim,
        }
    )
    artifacts.write(cycle_id, hard)
    return hard
