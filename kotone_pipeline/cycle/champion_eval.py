"""The champion before a cycle and its scores: run where its predictor loads here, else scored from the
predictions its own training run recorded (an HF LoRA adapter, on a machine without the LoRA extra)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kotone_pipeline.cycle.base import BaseData
from kotone_pipeline.cycle.documents import (
    ChampionBefore,
    ValidationSnapshotDoc,
)
from kotone_pipeline.domain.data.jsonl import iter_json_lines
from kotone_pipeline.domain.data.schemas import (
    EvalRow,
    EvalSummary,
    Pair,
)
from kotone_pipeline.domain.model.metrics import evaluate, score_prediction_records
from kotone_pipeline.domain.model.predictor import Predictor
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry

BASELINE_NAMES = ("baseline-constant", "baseline-rule")
# The gate's reference before the first champion. The rule baseline reads requests with the lexicon the
# teacher labels with (and prompts with the catalog), so on the teacher's holdout it *is* the labeller:
# its error is the label noise alone. It is scored and reported every cycle, on the human set above all,
# but a learned model is never required to out-label the labeller on the labeller's own data.
GATE_BASELINES = ("baseline-constant",)


class ChampionUnavailableError(RuntimeError):
    """The champion can neither be run here nor be scored from the predictions its run recorded."""


def load_predictor(model_uri: str) -> Predictor:
    """A champion's predictor: a local model directory, or a LoRA adapter (a local directory or a Hub
    ``ORG/NAME@REVISION``; running it needs the train extra)."""
    path = Path(model_uri)
    if (path / "model.json").is_file():
        from kotone_pipeline.domain.model.local_model import LocalTextModel

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


# A run's recorded predictions: what validation_snapshot keeps in the state store beside the cycle's documents.
RECORDED_PREDICTIONS = tuple(
    f"predictions_{dataset}.jsonl" for dataset in ("validation", "holdout", "human", "field", "probe")
)


def champion_run_dir(artifacts: CycleArtifacts, champion: Champion) -> Path | None:
    """Where validation_snapshot put the champion's run outputs (predictions), fetched from a remote state
    store when this machine has not seen them."""
    if not champion.cycle_id or not champion.run_id:
        return None
    return artifacts.local_files(champion.cycle_id, f"runs/{champion.run_id}", RECORDED_PREDICTIONS)


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
    validation_rows = f"runs/{champion.run_id}/eval_rows_validation"
    if probe.is_file():
        summaries["probe"], rows["probe"] = _score_recorded(probe, base.probe, champion.model_id, "probe")
        how["probe"] = probe.name
    elif artifacts.has_rows(champion.cycle_id, validation_rows):
        run = artifacts.read(champion.cycle_id, ValidationSnapshotDoc).run(champion.run_id)
        if run is None or run.validation is None:
            raise ChampionUnavailableError(
                f"champion {champion.model_id}: validation_snapshot of cycle {champion.cycle_id} has no validation "
                f"metrics for run {champion.run_id}; re-materialize it"
            )
        summaries["probe"] = run.validation
        rows["probe"] = artifacts.read_eval_rows(champion.cycle_id, validation_rows)
        how["probe"] = "eval_rows_validation.jsonl (the run recorded no probe predictions; dataset 'validation')"
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
