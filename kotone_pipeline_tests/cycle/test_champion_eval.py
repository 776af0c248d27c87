"""A champion is scored from the predictions its run recorded on the frozen sets (remote always, local when
nothing needs the model itself)."""

import json
from pathlib import Path

import pytest

from kotone_pipeline.cycle.base import BaseData, load_base
from kotone_pipeline.cycle.champion_eval import ChampionUnavailableError, evaluate_champion
from kotone_pipeline.cycle.documents import ValidatedRun, ValidationSnapshotDoc
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import write_jsonl
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.model.metrics import score_prediction_records
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion

NEUTRAL = dict.fromkeys(DIMS, 5)
CHAMPION = Champion(
    model_id="c1/r0",
    model_uri="org/kotone-runs@0123abcd",  # not a path on this machine: a remote LoRA adapter
    cycle_id="c1",
    run_id="r0",
    holdout_mae=1.0,
    decision_reason="promoted in a test",
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BaseData:
    return load_base(CycleArtifacts(tmp_path_factory.mktemp("base")), split_seed=7)


@pytest.fixture
def artifacts(tmp_path: Path) -> CycleArtifacts:
    return CycleArtifacts(tmp_path)


def neutral_records(pairs: list[Pair]) -> list[dict]:
    return [{"pair_id": p.id, "raw": json.dumps(NEUTRAL), "prediction": NEUTRAL, "latency_ms": 900.0} for p in pairs]


def mean_abs_from_neutral(pairs: list[Pair]) -> float:
    return sum(abs(v - 5) for p in pairs for v in p.vector.values()) / (len(pairs) * len(DIMS))


def run_dir(artifacts: CycleArtifacts) -> Path:
    return artifacts.path("c1", "runs/r0")


def test_recorded_probe_and_holdout_predictions_score_the_champion(artifacts, base) -> None:
    write_jsonl(run_dir(artifacts) / "predictions_holdout.jsonl", neutral_records(base.holdout))
    write_jsonl(run_dir(artifacts) / "predictions_probe.jsonl", neutral_records(base.probe))
    result = evaluate_champion(artifacts, CHAMPION, base)
    assert result.how["mode"] == "recorded" and result.predictor is None
    assert result.how["probe"] == "predictions_probe.jsonl"
    assert result.summaries["holdout"].vector_mae == pytest.approx(mean_abs_from_neutral(base.holdout))
    assert result.summaries["probe"].vector_mae == pytest.approx(mean_abs_from_neutral(base.probe))
    assert len(result.rows["probe"]) == len(base.probe)


def test_without_probe_predictions_the_runs_validation_failures_are_mined_never_the_holdout(artifacts, base) -> None:
    write_jsonl(run_dir(artifacts) / "predictions_holdout.jsonl", neutral_records(base.holdout))
    validation = base.teacher_pairs[:40]
    summary, rows = score_prediction_records(validation, neutral_records(validation), "c1/r0", "validation")
    write_jsonl(run_dir(artifacts) / "eval_rows_validation.jsonl", rows)
    run = ValidatedRun(run_id="r0", job_id="c1--r0", stage="COMPLETED", validation=summary)
    artifacts.write("c1", ValidationSnapshotDoc(cycle_id="c1", runs=[run], best_run_id="r0", completed=1, failed=0))
    result = evaluate_champion(artifacts, CHAMPION, base)
    assert result.how["probe"].startswith("eval_rows_validation.jsonl")
    assert result.summaries["probe"].dataset == "validation"
    assert [r.pair_id for r in result.rows["probe"]] == [p.id for p in validation]
    holdout_ids = {p.id for p in base.holdout}
    assert not holdout_ids & {r.pair_id for r in result.rows["probe"]}


def test_holdout_predictions_that_miss_rows_are_refused(artifacts, base) -> None:
    write_jsonl(run_dir(artifacts) / "predictions_holdout.jsonl", neutral_records(base.holdout[:-3]))
    write_jsonl(run_dir(artifacts) / "predictions_probe.jsonl", neutral_records(base.probe))
    with pytest.raises(ChampionUnavailableError, match="no prediction for 3 of the"):
        evaluate_champion(artifacts, CHAMPION, base)


def test_nothing_to_mine_from_is_a_clear_error(artifacts, base) -> None:
    write_jsonl(run_dir(artifacts) / "predictions_holdout.jsonl", neutral_records(base.holdout))
    with pytest.raises(ChampionUnavailableError, match="re-materialize validation_snapshot of cycle c1"):
        evaluate_champion(artifacts, CHAMPION, base)


def test_a_local_champion_is_scored_from_its_recorded_predictions_with_the_same_numbers(artifacts, base) -> None:
    from kotone_pipeline.domain.data.schemas import LocalHyperParams
    from kotone_pipeline.domain.model.local_model import LocalTextModel
    from kotone_pipeline.train_local import prediction_records

    model = LocalTextModel("c1/r0").fit(base.teacher_pairs[:400], LocalHyperParams(use_encoder=False))
    model_dir = model.save(run_dir(artifacts) / "model")
    for name, pairs in (("holdout", base.holdout), ("probe", base.probe), ("human", base.human)):
        write_jsonl(run_dir(artifacts) / f"predictions_{name}.jsonl", prediction_records(model, pairs))
    local = CHAMPION.model_copy(update={"model_uri": str(model_dir)})

    recorded = evaluate_champion(artifacts, local, base, need_predictor=False)
    ran = evaluate_champion(artifacts, local, base, need_predictor=True)
    assert recorded.how["mode"] == "recorded" and recorded.predictor is None
    assert ran.how["mode"] == "run" and ran.predictor is not None
    for dataset in ("holdout", "probe", "human"):
        assert recorded.summaries[dataset].vector_mae == ran.summaries[dataset].vector_mae
        assert recorded.summaries[dataset].per_dim_mae == ran.summaries[dataset].per_dim_mae

    # Predictions that no longer cover the frozen set: the local model is run instead.
    write_jsonl(run_dir(artifacts) / "predictions_holdout.jsonl", neutral_records(base.holdout[:-1]))
    fallback = evaluate_champion(artifacts, local, base, need_predictor=False)
    assert fallback.how["mode"] == "run"
    assert fallback.summaries["holdout"].vector_mae == ran.summaries["holdout"].vector_mae
