"""One cycle of the loop as plain functions over the artifact store and the service interfaces.

The Dagster assets call exactly these functions (and only add metadata), and the plain-call
benchmark runs them directly, so both measure the same work.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kotone_pipeline.cycle.base import BaseData, load_base
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.documents import (
    STAGE_DOCUMENTS,
    AttemptsDoc,
    AugmentedPairsDoc,
    ChampionBefore,
    EarlierJob,
    EvalSummaryDoc,
    HardDimsDoc,
    JobRecord,
    PromotionDecisionDoc,
    SmokeLimits,
    SplitDatasetDoc,
    SubmittedRun,
    TrainingSubmissionDoc,
    ValidatedRun,
    ValidationSnapshotDoc,
    current_jobs,
)
from kotone_pipeline.cycle.flywheel import (
    TRAINING_SIDE_FILE,
    reviewed_rows,
    step_reviewed_requests,
    step_served_requests,
)
from kotone_pipeline.cycle.tracking import (
    DATASET_ARTIFACT_ENV,
    dataset_artifact_for_jobs,
    log_cycle,
    log_dataset,
    log_eval,
    trace_current_model,
    write_failure_playbook,
)
from kotone_pipeline.domain.augment import augment
from kotone_pipeline.domain.baselines import ConstantBaseline, RuleBaseline
from kotone_pipeline.domain.composer import Composer
from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.domain.gate import decide_promotion
from kotone_pipeline.domain.hard_dims import find_hard_dims, per_dim_mae
from kotone_pipeline.domain.hparams import (
    LORA_LR_LADDER,
    campaign_variants,
    next_local_hparams,
    next_lora_hparams,
)
from kotone_pipeline.domain.job_timeout import default_job_timeout_s
from kotone_pipeline.domain.jsonl import iter_json_lines
from kotone_pipeline.domain.lexicon import default_lexicon
from kotone_pipeline.domain.lexicon_patch import lexicon_version, stamp_lexicon_version
from kotone_pipeline.domain.metrics import evaluate, score_prediction_records
from kotone_pipeline.domain.predictor import Predictor
from kotone_pipeline.domain.schemas import (
    EvalRow,
    EvalSummary,
    FailureExample,
    GateDecision,
    LocalHyperParams,
    LoraHyperParams,
    Pair,
    normalize_text,
)
from kotone_pipeline.domain.split import check_leakage, compute_stats, split_pairs
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ANY_CHAMPION, Champion, ChampionChangedError, ChampionRegistry
from kotone_pipeline.services.datasets import SPLIT_FILES, DatasetRef, DatasetStore, published_splits
from kotone_pipeline.services.jobs import JobBackend, JobBackendError, JobState
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline.services.tracker import Tracker

# The documents a cycle writes, in order; the last one present is the cycle's stage.
STAGES: tuple[str, ...] = tuple(doc.NAME for doc in STAGE_DOCUMENTS)
BASELINE_NAMES = ("baseline-constant", "baseline-rule")
# The gate's reference before the first champion. The rule baseline reads requests with the lexicon the
# teacher labels with (and prompts with the catalog), so on the teacher's holdout it *is* the labeller:
# its error is the label noise alone. It is scored and reported every cycle, on the human set above all,
# but a learned model is never required to out-label the labeller on the labeller's own data.
GATE_BASELINES = ("baseline-constant",)


class LeakageError(RuntimeError):
    pass


class RunsNotFinishedError(RuntimeError):
    pass


class ChampionUnavailableError(RuntimeError):
    """The champion can neither be run here nor be scored from the predictions its run recorded."""


def _stable_id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12]


# --- champion ------------------------------------------------------------------------------------


def load_predictor(model_uri: str) -> Predictor:
    """A champion's predictor: a local model directory, or a LoRA adapter (a local directory or a Hub
    ``ORG/NAME@REVISION``; running it needs the train extra)."""
    path = Path(model_uri)
    if (path / "model.json").is_file():
        from kotone_pipeline.domain.local_model import LocalTextModel

        return LocalTextModel.load(path)
    from kotone_pipeline.services.lora_predictor import LoraPredictor

    return LoraPredictor.from_uri(model_uri)


@dataclass
class ChampionEval:
    """The champion's summaries and rows on ``probe`` (the rows hard dims are mined from) and ``holdout``."""

    model_id: str
    summaries: dict[str, EvalSummary]
    rows: dict[str, list[EvalRow]]
    how: dict[str, Any]  # recorded in eval_summary.json: how each set was scored
    predictor: Predictor | None = None  # None when scored from recorded predictions


def champion_run_dir(artifacts: CycleArtifacts, champion: Champion) -> Path | None:
    """Where validation_snapshot put the champion's run outputs (predictions, scored rows)."""
    if not champion.cycle_id or not champion.run_id:
        return None
    return artifacts.path(champion.cycle_id, f"runs/{champion.run_id}")


def evaluate_champion(
    artifacts: CycleArtifacts, champion: Champion, base: BaseData, *, need_predictor: bool = True
) -> ChampionEval:
    """Run the champion on the frozen sets when it is a model on this machine; a remote model (an HF run's
    ``repo@sha``) is scored from the predictions its job recorded on the same frozen holdout set, so the
    Dagster host needs neither the train extra nor a GPU. Only when nothing was recorded is the adapter run
    here; when that is impossible too, the error says what is missing.

    ``need_predictor=False`` (nothing will trace the model): a local champion is scored from its run's
    recorded predictions too. They come from the same saved model on the same frozen sets (every row is
    checked to be covered), so the numbers are the same, without loading the model every cycle."""
    run_dir = champion_run_dir(artifacts, champion)
    remote = not Path(champion.model_uri).exists()
    recorded = run_dir is not None and (run_dir / "predictions_holdout.jsonl").is_file()
    if recorded and (remote or not need_predictor):
        assert run_dir is not None
        try:
            return _recorded_champion(artifacts, champion, base, run_dir)
        except ChampionUnavailableError:
            if remote:
                raise
            # A local model can still be run: an eval set changed since its run, or a file is unusable.
    try:
        predictor = load_predictor(champion.model_uri)
        if remote:
            predictor.load()  # type: ignore[attr-defined] - a LoraPredictor: fail here, with context, not mid-eval
    except Exception as exc:
        raise ChampionUnavailableError(
            f"champion {champion.model_id} ({champion.model_uri}) cannot be evaluated: its run recorded no "
            f"predictions_holdout.jsonl under {run_dir} and running it here failed ({type(exc).__name__}: {exc}). "
            "Re-materialize validation_snapshot of its cycle to fetch the run's outputs, or install the train "
            "extra (pip install 'kotone-pipeline[train]') on a machine that can run the model"
        ) from exc
    summaries, rows = {}, {}
    for dataset, pairs in base.eval_sets():
        summaries[dataset], rows[dataset] = evaluate(predictor, pairs, dataset=dataset)
    how = {"mode": "run", "model_uri": champion.model_uri}
    return ChampionEval(predictor.model_id, summaries, rows, how, predictor)


def _score_recorded(
    path: Path, pairs: Sequence[Pair], model_id: str, dataset: str
) -> tuple[EvalSummary, list[EvalRow]]:
    records, problems = read_prediction_records(path)
    if problems:
        raise ChampionUnavailableError(f"recorded predictions unusable: {'; '.join(problems[:5])}")
    covered = {r.get("pair_id") for r in records}
    missing = [p.id for p in pairs if p.id not in covered]
    if missing:
        # Not a frozen set the run predicted: scoring the gaps as neutral would misstate the champion.
        raise ChampionUnavailableError(
            f"{path}: no prediction for {len(missing)} of the {len(pairs)} {dataset} rows (e.g. {missing[0]}); "
            f"the {dataset} set changed since the champion's run"
        )
    return score_prediction_records(pairs, records, model_id=model_id, dataset=dataset)


def _recorded_champion(artifacts: CycleArtifacts, champion: Champion, base: BaseData, run_dir: Path) -> ChampionEval:
    """Holdout from the run's recorded predictions; the mining rows from its probe predictions when the run
    recorded them, else from its scored validation rows (its own failures on data it never trained on; the
    holdout is never mined)."""
    summaries, rows = {}, {}
    how: dict[str, Any] = {"mode": "recorded", "model_uri": champion.model_uri, "run_dir": str(run_dir)}
    holdout = run_dir / "predictions_holdout.jsonl"
    summaries["holdout"], rows["holdout"] = _score_recorded(holdout, base.holdout, champion.model_id, "holdout")
    how["holdout"] = holdout.name
    human = run_dir / "predictions_human.jsonl"
    if human.is_file():
        summaries["human"], rows["human"] = _score_recorded(human, base.human, champion.model_id, "human")
        how["human"] = human.name
    if base.field:
        field_path = run_dir / "predictions_field.jsonl"
        try:
            summaries["field"], rows["field"] = _score_recorded(field_path, base.field, champion.model_id, "field")
            how["field"] = field_path.name
        except ChampionUnavailableError as exc:
            if not Path(champion.model_uri).exists():
                how["field"] = f"not scored: {exc}"  # a remote model cannot be run here; the gate says so
            else:
                raise  # the local model is run on the grown field set instead
    probe = run_dir / "predictions_probe.jsonl"
    validation_rows = run_dir / "eval_rows_validation.jsonl"
    if probe.is_file():
        summaries["probe"], rows["probe"] = _score_recorded(probe, base.probe, champion.model_id, "probe")
        how["probe"] = probe.name
    elif validation_rows.is_file():
        run = artifacts.read(champion.cycle_id, ValidationSnapshotDoc).run(champion.run_id)
        if run is None or run.validation is None:
            raise ChampionUnavailableError(
                f"champion {champion.model_id}: validation_snapshot of cycle {champion.cycle_id} has no validation "
                f"metrics for run {champion.run_id}; re-materialize it"
            )
        summaries["probe"] = run.validation
        rows["probe"] = artifacts.read_eval_rows(champion.cycle_id, f"runs/{champion.run_id}/eval_rows_validation")
        how["probe"] = f"{validation_rows.name} (the run recorded no probe predictions; dataset 'validation')"
    else:
        raise ChampionUnavailableError(
            f"champion {champion.model_id}: its run under {run_dir} recorded holdout predictions but neither "
            "probe predictions nor scored validation rows to mine hard dims from; re-materialize "
            f"validation_snapshot of cycle {champion.cycle_id}"
        )
    return ChampionEval(champion.model_id, summaries, rows, how)


def champion_before(artifacts: CycleArtifacts, registry: ChampionRegistry, cycle_id: str) -> Champion | None:
    """The champion this cycle started from, frozen at first use so re-runs give the same outputs."""
    if artifacts.has(cycle_id, ChampionBefore):
        return artifacts.read(cycle_id, ChampionBefore).champion
    current = registry.current()
    artifacts.write(cycle_id, ChampionBefore(champion=current))
    return current


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
        "baseline-constant": constant,
        "baseline-rule": RuleBaseline(base.catalog, fallback=constant.vector),
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
    if not artifacts.path(cycle_id, f"{TRAINING_SIDE_FILE}.jsonl").is_file():
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
        if artifacts.path(cycle_id, "eval_rows_reviewed.jsonl").is_file()
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


# --- augmented_pairs -------------------------------------------------------------------------------


def _earlier_augmented(artifacts: CycleArtifacts, earlier_cycles: Sequence[str]) -> list[Pair]:
    pairs: list[Pair] = []
    for cycle in earlier_cycles:
        if artifacts.path(cycle, "augmented_pairs.jsonl").is_file():
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
    lexicon, version = LexiconStore(artifacts.home).current()
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
    in_effect = LexiconStore(artifacts.home).current()[1]
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


# --- training_submission ---------------------------------------------------------------------------


def _champion_hparams(artifacts: CycleArtifacts, champion: Champion | None) -> dict[str, Any] | None:
    if champion is None or not champion.cycle_id:
        return None
    try:
        doc = artifacts.read(champion.cycle_id, TrainingSubmissionDoc)
    except FileNotFoundError:
        return None
    run = doc.run(champion.run_id)
    return run.hparams if run else None


def step_training_submission(
    artifacts: CycleArtifacts, backend: JobBackend, config: LoopConfig, cycle_id: str
) -> TrainingSubmissionDoc:
    """Next hyper-parameters from the rules, then one job per campaign run (adopting existing jobs)."""
    split_doc = artifacts.read(cycle_id, SplitDatasetDoc)
    dataset = split_doc.dataset
    if backend.name == "local" and dataset.store != "local":
        raise ValueError(
            f"cycle {cycle_id}: the local job backend trains from a dataset directory, but the split was "
            f"published to the {dataset.store!r} store ({dataset.uri}); use the local dataset store with it"
        )
    eval_doc = artifacts.read(cycle_id, EvalSummaryDoc)
    hard = artifacts.read(cycle_id, HardDimsDoc)
    # The probe set drives the rules; the holdout set is reserved for the promotion gate.
    candidate = eval_doc.summary("champion", "probe")
    baseline = min((eval_doc.summaries[n]["probe"] for n in BASELINE_NAMES), key=lambda s: s.vector_mae)
    current = _champion_hparams(artifacts, eval_doc.champion) or {}
    if config.trainer == "local":
        decision = next_local_hparams(LocalHyperParams(**current), candidate, baseline, hard.focus)
        variants = [
            # KOTONE_MIN_PEOPLE_ROWS: when people's rows train the model's correction part (domain/correction.py).
            {**v.model_dump(), "min_people_rows": config.min_people_rows}
            for v in campaign_variants(LocalHyperParams(**decision.next), config.campaign_size)
        ]
    else:
        decision = next_lora_hparams(LoraHyperParams(**current), candidate, baseline, hard.focus)
        variants = [
            {**decision.next, "learning_rate": decision.next["learning_rate"] * factor}
            for factor in LORA_LR_LADDER[: config.campaign_size]
        ]
    _refuse_changed_resubmission(artifacts, cycle_id, dataset, variants)
    dataset_artifact = dataset_artifact_for_jobs(split_doc)
    job_env = {DATASET_ARTIFACT_ENV: dataset_artifact} if dataset_artifact else {}
    job_env.update(backend.job_env(len(variants)))
    smoke = SmokeLimits(
        max_steps=config.job_max_steps,
        max_train_rows=config.job_max_train_rows,
        max_predict_rows=config.job_max_predict_rows,
    )
    doc = TrainingSubmissionDoc(
        cycle_id=cycle_id,
        trainer=config.trainer,
        backend=backend.name,
        dataset=dataset,
        hparams_decision=decision,
        runs=[],
        job_env=job_env,
        smoke=smoke if smoke != SmokeLimits() else None,
    )
    doc.pricing = backend.prepare_cycle(cycle_id) or None
    doc.embeddings = _prepare_local_embeddings(backend, config, dataset, variants)
    for index, hparams in enumerate(variants):
        run = SubmittedRun(
            run_id=f"r{index}",
            hparams=hparams,
            timeout_s=job_timeout_s(config, backend, split_doc.rows, hparams),
            job_id="",
            stage="",
        )
        state = backend.submit(doc.job_spec(run))
        doc.runs.append(run.model_copy(update=JobRecord.of(state).model_dump()))
    artifacts.write(cycle_id, doc)
    return doc


def _prepare_local_embeddings(
    backend: JobBackend, config: LoopConfig, dataset: DatasetRef, variants: Sequence[dict[str, Any]]
) -> dict[str, Any] | None:
    """Local jobs on this machine share the embedding cache: fill it once before they start."""
    if backend.name != "local" or config.trainer != "local" or not any(v.get("use_encoder") for v in variants):
        return None
    from kotone_pipeline.domain.embedding_cache import prepare_embeddings  # not sklearn: this only embeds

    # The split was written and checked by this cycle's steps: its texts are read as they are, without
    # validating every row again.
    texts = []
    for name in SPLIT_FILES.values():
        path = Path(dataset.uri) / name
        if path.is_file():
            for _, _, row, _ in iter_json_lines(path):  # a bad line is the job's to report, with its number
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    texts.append((str(row.get("source_type")), row["text"]))
    return prepare_embeddings(texts)


def job_timeout_s(config: LoopConfig, backend: JobBackend, rows: dict[str, int], hparams: dict[str, Any]) -> int:
    """KOTONE_JOB_TIMEOUT_S when set; else the local default, or the LoRA formula (domain.job_timeout)."""
    if config.job_timeout_s:
        return config.job_timeout_s
    if config.trainer != "lora":
        return 1800  # the local trainer fits in seconds; this only bounds a hung process
    train_rows = int(rows.get("train", 0))
    if config.job_max_train_rows:
        train_rows = min(train_rows, config.job_max_train_rows)
    cap = config.job_max_predict_rows or 10**9
    predict_rows = sum(min(int(rows.get(split, 0)), cap) for split in ("validation", "holdout", "probe", "human"))
    return default_job_timeout_s(
        getattr(backend, "flavor", "local"),
        train_rows,
        predict_rows,
        hparams,
        max_steps=config.job_max_steps,
        max_timeout_s=int(getattr(backend, "max_timeout_s", 6 * 3600)),
    )


def _refuse_changed_resubmission(
    artifacts: CycleArtifacts, cycle_id: str, dataset: DatasetRef, variants: list[dict[str, Any]]
) -> None:
    """Re-submitting adopts the existing jobs, which only is right when they train the same thing."""
    previous = artifacts.read_if_present(cycle_id, TrainingSubmissionDoc)
    if previous is None:
        return
    changes = []
    if previous.dataset.version != dataset.version:
        changes.append(f"dataset version {previous.dataset.version} -> {dataset.version}")
    for run in previous.runs:
        index = int(run.run_id.removeprefix("r"))
        if index < len(variants) and run.hparams != variants[index]:
            changes.append(f"{run.run_id} hyper-parameters changed")
    if changes:
        raise ValueError(
            f"cycle {cycle_id} already has training jobs for different inputs ({'; '.join(changes)}); "
            "its jobs cannot be re-used — start a new cycle instead"
        )


# --- polling (sensor) ------------------------------------------------------------------------------


@dataclass
class PollResult:
    finished: dict[str, list[JobState]] = field(default_factory=dict)
    running: dict[str, list[JobState]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # job ids the backend did not report


def cycle_job_ids(artifacts: CycleArtifacts, cycle_id: str) -> dict[str, str]:
    """Run id -> the id of its latest job (after any re-submission by the polling path)."""
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    attempts = artifacts.read_if_present(cycle_id, AttemptsDoc)
    return {run_id: job.job_id for run_id, job in current_jobs(submission, attempts).items()}


def open_cycles(artifacts: CycleArtifacts) -> dict[str, list[str]]:
    """Cycles whose jobs were submitted but not yet validated -> their latest job ids."""
    result = {}
    for cycle in artifacts.cycles_on_disk():
        if artifacts.has(cycle, TrainingSubmissionDoc) and not artifacts.has(cycle, ValidationSnapshotDoc):
            result[cycle] = list(cycle_job_ids(artifacts, cycle).values())
    return result


def gone_state(job_id: str, cycle_id: str) -> JobState:
    """A job the backend no longer knows (deleted, garbage-collected): terminal, so its cycle can end."""
    return JobState(
        job_id=job_id,
        cycle_id=cycle_id,
        run_id=job_id.rsplit(".", 1)[-1],
        backend="unknown",
        stage="DELETED",
        message="the job backend no longer knows this job",
    )


def poll_jobs(backend: JobBackend, cycles: dict[str, list[str]], gone: Collection[str] = ()) -> PollResult:
    """All open cycles in one backend call.

    A job the backend does not report counts as still running (a remote list can lag behind a
    create), unless the caller has seen it missing long enough to list it in ``gone``.
    """
    all_ids = [job_id for ids in cycles.values() for job_id in ids]
    states = backend.statuses(all_ids) if all_ids else {}
    result = PollResult(missing=[j for j in all_ids if j not in states])
    for cycle, ids in cycles.items():
        known = [states[i] if i in states else gone_state(i, cycle) for i in ids if i in states or i in gone]
        if len(known) == len(ids) and all(s.terminal for s in known):
            result.finished[cycle] = known
        else:
            result.running[cycle] = known
    return result


def resubmit_timed_out(
    artifacts: CycleArtifacts, backend: JobBackend, cycle_id: str, states: Sequence[JobState]
) -> list[JobState]:
    """Submit again the runs of an ended cycle whose job hit its timeout with attempts left (the backend says
    which); returns the new jobs, and records each in the cycle's ``attempts`` document (the new job, the
    earlier one), which only this polling path writes. The backend's idempotent ``submit`` adopts a job
    already created for that attempt, so a repeated call creates nothing. A permanent refusal (e.g. the
    budget) is recorded on the run, which is then validated as it ended; a transient one raises
    JobBackendError (the caller tries again later)."""
    candidates = [s for s in states if backend.resubmits(s)]
    if not candidates:
        return []
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    attempts = artifacts.read_if_present(cycle_id, AttemptsDoc) or AttemptsDoc(cycle_id=cycle_id)
    new_states: list[JobState] = []
    transient: JobBackendError | None = None
    for state in candidates:
        run = submission.run(state.run_id)
        record = attempts.of(state.run_id)
        if run is None or record.resubmit_refused:
            continue
        try:
            new = backend.submit(submission.job_spec(run))
        except JobBackendError as exc:
            if exc.transient:
                transient = exc  # keep what was submitted so far; the rest is tried again later
                break
            record.resubmit_refused = str(exc)
            continue
        if new.job_id == state.job_id:
            continue  # the backend kept the ended job (no attempts left by its count)
        message = (state.message or "").split("\n", 1)[0]
        record.earlier_jobs.append(
            EarlierJob(job_id=state.job_id, attempt=state.attempt, stage=state.stage, message=message)
        )
        record.current = JobRecord.of(new)
        new_states.append(new)
    attempts.runs = {run_id: r for run_id, r in attempts.runs.items() if r != type(r)()}
    artifacts.write(cycle_id, attempts)
    if transient is not None:
        raise transient
    return new_states


# --- validation_snapshot ---------------------------------------------------------------------------


def read_prediction_records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    records, problems = [], []
    if not path.is_file():
        return records, [f"{path}: missing"]
    for lineno, _, obj, error in iter_json_lines(path):
        if error or obj is None:
            problems.append(f"{path}:{lineno}: {error}")
        else:
            records.append(obj)
    return records, problems


def step_validation_snapshot(
    artifacts: CycleArtifacts, backend: JobBackend, store: DatasetStore, cycle_id: str
) -> ValidationSnapshotDoc:
    """Per run: status, timings, cost and metrics on validation and holdout; best = lowest validation MAE."""
    submission = artifacts.read(cycle_id, TrainingSubmissionDoc)
    jobs = current_jobs(submission, artifacts.read_if_present(cycle_id, AttemptsDoc))
    job_ids = [job.job_id for job in jobs.values()]
    states = backend.statuses(job_ids)
    # Validation is requested once every job ended or vanished; a vanished job is recorded as DELETED.
    states = {j: states.get(j) or gone_state(j, cycle_id) for j in job_ids}
    pending = [j for j in job_ids if not states[j].terminal]
    if pending:
        raise RunsNotFinishedError(f"cycle {cycle_id}: runs not finished yet: {', '.join(pending)}")
    splits = store.load(submission.dataset)
    runs = []
    for run in submission.runs:
        state = states[jobs[run.run_id].job_id]
        entry = ValidatedRun(
            run_id=run.run_id,
            job_id=state.job_id,
            stage=state.stage,
            message=state.message,
            hparams=run.hparams,
            url=state.url,
            started_at=state.started_at,
            finished_at=state.finished_at,
            running_s=state.running_s,
            cost_usd=state.cost_usd,
            attempt=jobs[run.run_id].attempt,
        )
        if state.stage == "COMPLETED":
            out = backend.fetch_outputs(state, artifacts.path(cycle_id, f"runs/{run.run_id}"))
            for dataset in ("validation", "holdout", "human", "field"):
                optional = dataset in ("human", "field")
                if optional and not (splits.get(dataset) and (out / f"predictions_{dataset}.jsonl").is_file()):
                    continue  # an empty field set, or a version published before the set travelled with it
                records, bad = read_prediction_records(out / f"predictions_{dataset}.jsonl")
                entry.problems += bad
                summary, scored = score_prediction_records(
                    splits[dataset], records, model_id=f"{cycle_id}/{run.run_id}", dataset=dataset
                )
                setattr(entry, dataset, summary)
                # Kept so that a champion that cannot run here is still evaluated (evaluate_champion).
                artifacts.write_rows(cycle_id, f"runs/{run.run_id}/eval_rows_{dataset}", scored)
            entry.model_uri = _model_uri(state, out)
        else:
            entry.log_tail = backend.logs_tail(state.job_id, 20) if state.backend != "unknown" else ""
        runs.append(entry)
    completed = [r for r in runs if r.validation is not None]
    best = min(completed, key=lambda r: (r.validation.vector_mae, r.run_id), default=None)  # type: ignore[union-attr]
    doc = ValidationSnapshotDoc(
        cycle_id=cycle_id,
        runs=runs,
        best_run_id=best.run_id if best else None,
        completed=len(completed),
        failed=len(runs) - len(completed),
        total_cost_usd=sum(r.cost_usd or 0.0 for r in runs),
    )
    artifacts.write(cycle_id, doc)
    return doc


def _model_uri(state: JobState, out: Path) -> str:
    """The run's model: a Hub run pinned to the commit its outputs were fetched from (a branch can move),
    else the backend's ``repo@revision``, else the local output folder."""
    pinned = out / "outputs_revision.txt"
    if pinned.is_file() and "@" in (uri := pinned.read_text(encoding="utf-8").strip()):
        return uri
    if state.output_uri and "@" in state.output_uri:
        return state.output_uri
    return str(out / "model")


# --- promotion_decision ----------------------------------------------------------------------------


def step_promotion_decision(
    artifacts: CycleArtifacts,
    registry: ChampionRegistry,
    config: LoopConfig,
    cycle_id: str,
    force_reason: str | None = None,
    tracker: Tracker | None = None,
) -> PromotionDecisionDoc:
    """The gate decides; only a promoting decision changes the registry (atomically)."""
    snapshot = artifacts.read(cycle_id, ValidationSnapshotDoc)
    eval_doc = artifacts.read(cycle_id, EvalSummaryDoc)
    summaries = eval_doc.summaries
    best = snapshot.best
    champion = eval_doc.champion
    champion_human = eval_doc.summary("champion", "human") if champion else None
    champion_field = eval_doc.summary("champion", "field") if champion else None
    decision = decide_promotion(
        candidate_run_id=f"{cycle_id}/{best.run_id}" if best else None,
        candidate=best.holdout if best else None,
        champion_id=champion.model_id if champion else None,
        champion=summaries["champion"]["holdout"] if champion else None,
        baselines={n: summaries[n]["holdout"] for n in GATE_BASELINES},
        thresholds=config.gate_thresholds(),
        force_reason=force_reason or None,
        candidate_model_ref=best.model_uri if best else None,
        candidate_human=best.human if best else None,
        reference_human={
            **{n: summaries[n]["human"] for n in GATE_BASELINES if "human" in summaries[n]},
            **({champion.model_id: champion_human} if champion and champion_human else {}),
        },
        candidate_field=best.field if best else None,
        reference_field={
            **{n: summaries[n]["field"] for n in GATE_BASELINES if "field" in summaries[n]},
            **({champion.model_id: champion_field} if champion and champion_field else {}),
        },
    )
    # A run that died (killed, OOM, timed out) is named in the decision log, not only in the snapshot.
    failed = [
        f"run {r.run_id} (job {r.job_id}) ended {r.stage}: " + (r.message or "no message").splitlines()[0]
        for r in snapshot.runs
        if r.stage != "COMPLETED"
    ]
    if failed:
        decision = decision.model_copy(update={"reasons": [*decision.reasons, *failed]})
    decision_id = f"{cycle_id}/{best.run_id}" if best else f"{cycle_id}/none"
    if decision.promote and best is not None and best.holdout is not None and best.model_uri:
        candidate = Champion(
            model_id=decision_id,
            model_uri=best.model_uri,
            cycle_id=cycle_id,
            run_id=best.run_id,
            holdout_mae=best.holdout.vector_mae,
            human_mae=best.human.vector_mae if best.human else None,
            per_dim_mae=best.holdout.per_dim_mae,
            decision_reason="; ".join(decision.reasons),
            forced=decision.forced,
        )
        # The gate compared against the champion this cycle started from; a forced promotion is a
        # person's override and skips that guard.
        expected = ANY_CHAMPION if decision.forced else (champion.model_id if champion else None)
        try:
            registry.promote(candidate, decision_id=decision_id, expected_current=expected)
        except ChampionChangedError as exc:
            decision = decision.model_copy(update={"promote": False, "reasons": [f"keep: {exc}", *decision.reasons]})
    doc = PromotionDecisionDoc(
        cycle_id=cycle_id,
        decision_id=decision_id,
        decision=decision,
        champion_before=champion,
        champion_after=registry.current(),
    )
    if tracker:
        doc.tracking = log_cycle(tracker, artifacts, cycle_id, decision)
    artifacts.write(cycle_id, doc)
    return doc


# --- the whole cycle without Dagster (benchmark baseline, headless fallback) -----------------------


def run_cycle_plain(
    artifacts: CycleArtifacts,
    backend: JobBackend,
    store: DatasetStore,
    registry: ChampionRegistry,
    config: LoopConfig,
    cycle_id: str,
    earlier_cycles: Sequence[str],
    poll_interval_s: float = 0.2,
    timeout_s: float = 600,
    tracker: Tracker | None = None,
) -> GateDecision:
    log = RequestLog(artifacts.home)
    step_served_requests(artifacts, log, cycle_id, earlier_cycles)
    step_reviewed_requests(artifacts, log, config, cycle_id, earlier_cycles)
    step_eval_summary(artifacts, registry, config, cycle_id, tracker, earlier_cycles)
    step_hard_dims(artifacts, config, cycle_id)
    step_augmented_pairs(artifacts, config, cycle_id, earlier_cycles)
    step_split_dataset(artifacts, store, config, cycle_id, earlier_cycles, tracker)
    step_training_submission(artifacts, backend, config, cycle_id)
    deadline = time.monotonic() + timeout_s
    job_ids = list(cycle_job_ids(artifacts, cycle_id).values())
    while True:
        finished = poll_jobs(backend, {cycle_id: job_ids}).finished.get(cycle_id)
        if finished is not None:
            if not resubmit_timed_out(artifacts, backend, cycle_id, finished):
                break
            job_ids = list(cycle_job_ids(artifacts, cycle_id).values())
        if time.monotonic() > deadline:
            raise RunsNotFinishedError(f"cycle {cycle_id}: jobs still running after {timeout_s:.0f}s")
        time.sleep(poll_interval_s)
    write_failure_playbook(artifacts, cycle_id)
    step_validation_snapshot(artifacts, backend, store, cycle_id)
    return step_promotion_decision(artifacts, registry, config, cycle_id, tracker=tracker).decision
