"""Two full local cycles through Dagster in a temporary KOTONE_HOME (real subprocess jobs): the session's
shared ``finished_cycles`` (kotone_pipeline_tests/shared_cycles.py)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.partitions import CYCLE_TAG
from kotone_pipeline.orchestration.runner import CycleRunner
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline_tests.documents import read_json
from kotone_pipeline_tests.markdown_text import swallowed
from kotone_pipeline_tests.shared_cycles import FinishedCycles, home_env, open_home_instance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_cycles(finished_cycles: FinishedCycles):
    """The session's two finished cycles (shared_cycles.py), read through the instance under their home."""
    with open_home_instance(finished_cycles.home) as instance:
        yield {
            "home": finished_cycles.home,
            "first": finished_cycles.reports["c1"],
            "second": finished_cycles.reports["c2"],
            "instance": instance,
            "shared": finished_cycles,
        }


def test_first_cycle_has_no_champion_and_promotes_over_baselines(two_cycles) -> None:
    first = two_cycles["first"]
    assert first.champion_before is None
    assert first.champion_holdout_mae_before is None
    assert first.candidate_holdout_mae is not None
    # The local model beats the best baseline by far on this data, so the gate promotes it.
    assert first.decision == "promote", first.reasons
    assert first.candidate_holdout_mae < first.reference_holdout_mae_before


def test_second_cycle_evaluates_the_first_cycles_champion(two_cycles) -> None:
    first, second = two_cycles["first"], two_cycles["second"]
    assert second.champion_before == first.champion_after
    arts = CycleArtifacts(two_cycles["home"])
    eval_doc = read_json(arts, "c2", "eval_summary")
    assert eval_doc["current_model"] == "champion"
    assert eval_doc["champion"]["cycle_id"] == "c1"
    # The champion's holdout MAE measured in cycle 2 equals what the gate saw for it in cycle 1.
    assert eval_doc["summaries"]["champion"]["holdout"]["vector_mae"] == pytest.approx(first.candidate_holdout_mae)


def test_champion_never_gets_worse_and_registry_changed_only_through_the_gate(two_cycles) -> None:
    home: Path = two_cycles["home"]
    history = [json.loads(line) for line in (home / "registry" / "champion_history.jsonl").read_text().splitlines()]
    arts = CycleArtifacts(home)
    promoted_ids = [
        read_json(arts, c, "promotion_decision")["decision_id"]
        for c in ("c1", "c2")
        if read_json(arts, c, "promotion_decision")["decision"]["promote"]
    ]
    assert [h["model_id"] for h in history] == promoted_ids
    maes = [h["holdout_mae"] for h in history]
    assert maes == sorted(maes, reverse=True)


def test_every_cycle_asset_was_materialized_with_lineage(two_cycles) -> None:
    instance: dg.DagsterInstance = two_cycles["instance"]
    for key in [
        "eval_summary",
        "hard_dims",
        "augmented_pairs",
        "split_dataset",
        "training_submission",
        "trained_models",
        "validation_snapshot",
        "promotion_decision",
    ]:
        for cycle in ("c1", "c2"):
            assert cycle in instance.get_materialized_partitions(dg.AssetKey(key)), (
                f"{key} not materialized for {cycle}"
            )


def test_second_cycle_trains_on_first_cycles_augmented_rows(two_cycles) -> None:
    arts = CycleArtifacts(two_cycles["home"])
    rows_c1 = read_json(arts, "c1", "split_dataset")["rows"]
    rows_c2 = read_json(arts, "c2", "split_dataset")["rows"]
    added = len(arts.read_pairs("c2", "augmented_pairs"))
    assert rows_c2["train"] == rows_c1["train"] + added


def test_rematerializing_a_submitted_partition_submits_nothing_new(two_cycles, tmp_path: Path) -> None:
    shared: FinishedCycles = two_cycles["shared"]
    home = shared.copy_home(tmp_path / "kotone")  # it writes c1's documents again: not in the shared home
    jobs_before = sorted(p.name for p in (home / "jobs").iterdir())
    with open_home_instance(home) as instance, home_env(home):
        runner = CycleRunner(build_definitions({**shared.env, "KOTONE_HOME": str(home)}), instance)
        runner._execute("cycle_job", "c1")
    jobs_after = sorted(p.name for p in (home / "jobs").iterdir())
    assert jobs_after == jobs_before
    doc = read_json(CycleArtifacts(home), "c1", "training_submission")
    assert all(run["adopted"] for run in doc["runs"])


def test_each_cycle_logged_offline_wandb_runs_and_wrote_a_playbook(two_cycles) -> None:
    home: Path = two_cycles["home"]
    arts = CycleArtifacts(home)
    for cycle in ("c1", "c2"):
        eval_link = read_json(arts, cycle, "eval_summary")["tracking"]
        cycle_link = read_json(arts, cycle, "promotion_decision")["tracking"]
        for link in (eval_link, cycle_link):
            assert link["wandb_mode"] == "offline"
            assert Path(link["wandb_run_dir"]).is_dir()
            assert Path(link["wandb_run_dir"]).is_relative_to(home / "wandb")
        assert (home / "cycles" / cycle / "failure_playbook.md").read_text().startswith("#")
        # Offline, Weave tracing is off and the metadata says so instead of pretending.
        assert eval_link["weave_traced"] is False and eval_link["weave_reason"]


def test_every_cycle_scores_the_human_set_and_the_gate_guards_it(two_cycles) -> None:
    arts = CycleArtifacts(two_cycles["home"])
    first, second = two_cycles["first"], two_cycles["second"]
    for cycle in ("c1", "c2"):
        eval_doc = read_json(arts, cycle, "eval_summary")
        # Both baselines (and the champion from cycle 2 on) are scored on the hand-written set.
        scored = {name for name, by_ds in eval_doc["summaries"].items() if "human" in by_ds}
        assert {"baseline-constant", "baseline-rule"} <= scored
        assert all(by_ds["human"]["rows"] >= 150 for by_ds in eval_doc["summaries"].values() if "human" in by_ds)
        snapshot = read_json(arts, cycle, "validation_snapshot")
        best = next(r for r in snapshot["runs"] if r["run_id"] == snapshot["best_run_id"])
        decision = read_json(arts, cycle, "promotion_decision")["decision"]
        assert decision["candidate_human_mae"] == pytest.approx(best["human"]["vector_mae"])
        assert any(r.startswith(("pass: human set MAE", "FAIL: human set MAE")) for r in decision["reasons"])
    assert "champion" in {n for n, d in read_json(arts, "c2", "eval_summary")["summaries"].items() if "human" in d}
    # The learned model understands people's requests far better than the constant it replaced.
    assert first.candidate_human_mae < 0.7 * first.reference_human_mae_before
    assert second.reference_human_mae_before == pytest.approx(first.candidate_human_mae)


def test_split_dataset_logs_the_dataset_artifact_that_the_cycle_run_uses(two_cycles) -> None:
    from kotone_pipeline_tests.services.test_wandb_lineage import _artifact_records

    arts = CycleArtifacts(two_cycles["home"])
    for cycle in ("c1", "c2"):
        tracking = read_json(arts, cycle, "split_dataset")["tracking"]
        assert tracking["wandb_dataset_artifact"] == f"kotone-dataset:cycle-{cycle}"
        assert tracking["wandb_dataset_mode"] == "offline"
        (produced,) = _artifact_records(Path(tracking["wandb_dataset_run_dir"]))
        assert (produced.type, produced.use_after_commit) == ("dataset", False)
        # The cycle run (a later Dagster run, another tracker) declares that same version as its input.
        cycle_dir = Path(read_json(arts, cycle, "promotion_decision")["tracking"]["wandb_run_dir"])
        used = [r for r in _artifact_records(cycle_dir) if r.type == "dataset"]
        assert [(u.name, u.digest, u.use_after_commit) for u in used] == [(produced.name, produced.digest, True)]
        # Offline names cannot be resolved by a job's own online W&B run, so none is passed to the jobs.
        submission = read_json(arts, cycle, "training_submission")
        assert submission["dataset"]["version"] == read_json(arts, cycle, "split_dataset")["dataset"]["version"]


def test_the_workflow_log_links_each_cycles_wandb_runs_and_artifacts(two_cycles) -> None:
    from kotone_pipeline.orchestration.report_collection import collect_report
    from kotone_pipeline.services.champion import ChampionRegistry

    arts = CycleArtifacts(two_cycles["home"])
    report = collect_report(two_cycles["instance"], arts, ChampionRegistry(arts.registry_dir))
    for entry in report.cycles:
        labels = {link.label: link for link in entry.evidence}
        dataset_dir = read_json(arts, entry.cycle_id, "split_dataset")["tracking"]["wandb_dataset_run_dir"]
        assert dataset_dir in (labels["W&B dataset run (offline)"].detail or "")
        assert f"kotone-dataset:cycle-{entry.cycle_id}" in (labels["W&B dataset artifact"].detail or "")
        decision = read_json(arts, entry.cycle_id, "promotion_decision")
        if decision["decision"]["promote"]:
            assert f"kotone-model:cycle-{entry.cycle_id}" in (labels["W&B model artifact"].detail or "")
            assert f"aliases cycle-{entry.cycle_id}, champion" in (labels["W&B model artifact"].detail or "")
        else:
            assert "W&B model artifact" not in labels


def test_every_run_of_a_cycle_carries_the_cycle_tag(two_cycles) -> None:
    instance: dg.DagsterInstance = two_cycles["instance"]
    for cycle in ("c1", "c2"):
        by_partition = {r.run_id: r for r in instance.get_runs(dg.RunsFilter(tags={"dagster/partition": cycle}))}
        by_tag = {r.run_id for r in instance.get_runs(dg.RunsFilter(tags={CYCLE_TAG: cycle}))}
        assert {r.job_name for r in by_partition.values()} >= {"cycle_job", "validation_job"}
        assert by_tag == set(by_partition), f"{cycle}: one filter must find every run of the cycle"


def test_no_markdown_metadata_of_a_cycle_loses_a_placeholder(two_cycles) -> None:
    instance: dg.DagsterInstance = two_cycles["instance"]
    lost, scanned = {}, 0
    for key in instance.get_asset_keys():
        for fetch in (instance.fetch_materializations, instance.fetch_observations):
            for record in fetch(key, limit=1000).records:
                event = record.asset_materialization or record.asset_observation
                assert event is not None
                for name, value in event.metadata.items():
                    if isinstance(value, dg.MarkdownMetadataValue):
                        scanned += 1
                        if swallowed(value.value or ""):
                            lost[f"{key.to_user_string()} {record.partition_key} {name}"] = swallowed(value.value or "")
    assert scanned > 20  # every asset's tables, the decision log, the workflow log
    assert not lost, f"markdown would drop these as HTML tags: {lost}"
