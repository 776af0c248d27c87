"""Each asset through dg.materialize() on a temporary instance, checking what it writes and shows."""

import json
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.cycle.documents import TrainingSubmissionDoc
from kotone_pipeline.definitions import ALL_ASSETS, build_definitions
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.model.embedding_cache import get_encoder
from kotone_pipeline.orchestration.checks import all_checks
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline_tests.documents import read_json

pytestmark = pytest.mark.slow
CYCLE_ASSETS = [
    "served_requests",
    "reviewed_requests",
    "eval_summary",
    "hard_dims",
    "augmented_pairs",
    "split_dataset",
    "training_submission",
    "failure_playbook",
]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("kotone")
    defs = build_definitions({"KOTONE_HOME": str(home), "KOTONE_WANDB_MODE": "disabled", "KOTONE_CAMPAIGN_SIZE": "1"})
    assets = [*ALL_ASSETS, *all_checks]
    resources = dict(defs.resources or {})
    results = {}
    with dg.instance_for_test() as instance:
        base = dg.materialize(
            assets, selection=["catalog", "teacher_pairs", "eval_sets"], instance=instance, resources=resources
        )
        results["base"] = base
        instance.add_dynamic_partitions("cycles", ["a1"])
        for key in CYCLE_ASSETS:
            results[key] = dg.materialize(
                assets, selection=[key], partition_key="a1", instance=instance, resources=resources
            )
        yield home, results, instance


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    [event] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)]
    return event.materialization.metadata


def test_base_assets_report_counts_and_schema(materialized) -> None:
    _, results, _ = materialized
    base = results["base"]
    assert base.success
    assert metadata(base, "catalog")["parts"].value == 45
    teacher = metadata(base, "teacher_pairs")
    assert teacher["dagster/row_count"].value > 1000
    columns = [c.name for c in teacher["dagster/column_schema"].schema.columns]
    assert "vector.energy" in columns and "group_id" in columns
    assert "| kept |" in teacher["quality_report"].value or "kept" in teacher["quality_report"].value


def test_eval_summary_shows_baselines_without_a_champion(materialized) -> None:
    home, results, _ = materialized
    meta = metadata(results["eval_summary"], "eval_summary")
    assert meta["champion"].value == "none (baselines)"
    assert "| baseline-rule | holdout |" in meta["metrics"].value  # model and dataset in their own columns
    doc = read_json(CycleArtifacts(home), "a1", "eval_summary")
    assert doc["current_model"] in {"baseline-rule", "baseline-constant"}
    assert doc["tracking"] == {"wandb_mode": "disabled"} or doc["tracking"].get("wandb_mode") == "disabled"


def test_hard_dims_focus_the_worst_probe_dims(materialized) -> None:
    home, results, _ = materialized
    doc = read_json(CycleArtifacts(home), "a1", "hard_dims")
    # Ties go to the earlier dim in DIMS order (the JSON doc lists dims alphabetically).
    worst = sorted(DIMS, key=lambda d: (-doc["by_dim"][d], DIMS.index(d)))[:2]
    assert sorted(doc["focus"]) == sorted(worst)
    assert metadata(results["hard_dims"], "hard_dims")["source"].value == "eval_rows"


def test_augmented_pairs_are_new_train_rows_for_this_cycle(materialized) -> None:
    home, results, _ = materialized
    pairs = CycleArtifacts(home).read_pairs("a1", "augmented_pairs")
    assert metadata(results["augmented_pairs"], "augmented_pairs")["dagster/row_count"].value == len(pairs) >= 12
    assert {p.origin for p in pairs} <= {"augmented", "replay"}
    assert all(p.cycle == "a1" and p.parent_id for p in pairs)


def test_split_dataset_is_published_and_its_checks_pass(materialized) -> None:
    home, results, _ = materialized
    result = results["split_dataset"]
    meta = metadata(result, "split_dataset")
    rows = meta["rows_by_split"].value
    # No field split: nobody reviewed a served request yet (a version holds it only once it has rows).
    assert set(rows) == {"train", "validation", "test", "holdout", "probe", "human"}
    assert Path(meta["dataset_uri"].value).is_dir()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"split_schema": True, "split_no_leakage": True, "split_ratios": True}


def resubmit(home: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Materialize a1's training_submission again, as a person re-running it from the UI would."""
    defs = build_definitions({"KOTONE_HOME": str(home), "KOTONE_WANDB_MODE": "disabled", "KOTONE_CAMPAIGN_SIZE": "1"})
    return dg.materialize(
        [*ALL_ASSETS, *all_checks],
        selection=["training_submission"],
        partition_key="a1",
        instance=instance,
        resources=dict(defs.resources or {}),
        raise_on_error=False,
    )


def failed_resubmission(home: Path, instance: dg.DagsterInstance) -> dg.DagsterEvent:
    """``resubmit``, expecting it to fail: its one step-failure event."""
    result = resubmit(home, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure


def test_training_submission_records_one_job_per_run_and_rematerializing_adds_none(materialized) -> None:
    home, results, instance = materialized
    doc = read_json(CycleArtifacts(home), "a1", "training_submission")
    assert [r["run_id"] for r in doc["runs"]] == ["r0"]
    checks = {e.check_name: e.passed for e in results["training_submission"].get_asset_check_evaluations()}
    assert checks == {"one_job_per_run": True}
    assert metadata(results["training_submission"], "training_submission")["new_jobs"].value == 1
    again = resubmit(home, instance)
    assert again.success and metadata(again, "training_submission")["new_jobs"].value == 0
    assert len(list((home / "jobs").iterdir())) == 1


def test_training_submission_embeds_the_split_once_for_the_local_jobs(materialized) -> None:
    home, results, _ = materialized
    doc = read_json(CycleArtifacts(home), "a1", "training_submission")
    dataset = Path(doc["dataset"]["uri"])
    requests = {
        row["text"]
        for path in dataset.glob("*.jsonl")
        for row in map(json.loads, path.read_text(encoding="utf-8").splitlines())
        if row["source_type"] == "request_text"
    }
    assert doc["embeddings"]["texts"] == len(requests) > 100
    encoder = get_encoder("default")
    assert encoder.cache is not None and set(encoder.cache.get_many(sorted(requests))) == requests
    shown = metadata(results["training_submission"], "training_submission")["embeddings_prepared"].value
    assert shown.startswith(f"{len(requests):,} request texts")


def test_an_encoder_that_cannot_load_fails_the_submission_with_one_clear_reason(
    materialized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _, instance = materialized
    jobs_before = sorted(p.name for p in (home / "jobs").iterdir())
    monkeypatch.setenv("KOTONE_ENCODER", str(tmp_path / "no-such-encoder"))
    failure = failed_resubmission(home, instance)
    error = failure.step_failure_data.error
    assert error is not None and "KOTONE_ENCODER" in error.message and "no-such-encoder" in error.message
    assert error.cls_name == "Failure"  # a reason for people, not an unexpected exception
    assert sorted(p.name for p in (home / "jobs").iterdir()) == jobs_before


def test_failure_playbook_is_saved_and_shown(materialized) -> None:
    home, results, _ = materialized
    text = (home / "cycles" / "a1" / "failure_playbook.md").read_text()
    meta = metadata(results["failure_playbook"], "failure_playbook")
    assert meta["playbook"].value == text
    focus = read_json(CycleArtifacts(home), "a1", "hard_dims")["focus"]
    for dim in focus:
        assert dim in text
    assert json.loads(json.dumps(meta["worst_dims"].value))[0] in text


def test_resubmitting_a_cycle_for_different_inputs_is_refused(materialized) -> None:
    home, _, instance = materialized
    arts = CycleArtifacts(home)
    doc = arts.read("a1", TrainingSubmissionDoc)
    # As if the partition's split had changed since its jobs were submitted.
    doc.dataset.version = "0" * 16
    arts.write("a1", doc)
    failure = failed_resubmission(home, instance)
    message = failure.event_specific_data.error.message  # type: ignore[union-attr]
    assert "already has training jobs for different inputs" in message and "start a new cycle" in message
    assert len(list((home / "jobs").iterdir())) == 1
