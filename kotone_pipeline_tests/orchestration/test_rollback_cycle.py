"""A rollback between real cycles: ``kotone champion rollback`` after c2, then c3 (c1 and c2 are the session's
shared cycles, gone on from in a copy of their home). The next gate compares against the rolled-back champion,
the history keeps every change in order, the Dagster instance has the rollback as an observation of
promotion_decision, and the workflow log (asset file and ``kotone report``) shows it as an event with its
reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.cycle.documents import EvalSummaryDoc, PromotionDecisionDoc
from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.runner import CycleRunner, open_instance
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline_tests.shared_cycles import FinishedCycles

pytestmark = pytest.mark.slow
runner = CliRunner()
REASON = "c2 answers app traffic worse (incident 12)"


def _force(defs: dg.Definitions, instance: dg.DagsterInstance, cycle_id: str, reason: str) -> None:
    """Decide ``cycle_id`` again with a forced promotion, as the launchpad does."""
    result = defs.resolve_job_def("validation_job").execute_in_process(
        instance=instance,
        partition_key=cycle_id,
        run_config={"ops": {"promotion_decision": {"config": {"force_reason": reason}}}},
    )
    assert result.success


@pytest.fixture(scope="module")
def rolled_back(finished_cycles: FinishedCycles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = finished_cycles.copy_home(tmp_path_factory.mktemp("rollback") / "kotone")
    env = {"KOTONE_HOME": str(home), "KOTONE_CAMPAIGN_SIZE": "1", "KOTONE_WANDB_MODE": "disabled"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("DAGSTER_HOME", raising=False)
        defs = build_definitions(env)
        artifacts = CycleArtifacts(home)
        registry = ChampionRegistry(artifacts.registry_dir)
        # The persistent instance under KOTONE_HOME, which the CLI reports the rollback to.
        with open_instance(home) as instance:
            cycles = CycleRunner(defs, instance, poll_interval_s=0.2)
            if registry.current().cycle_id != "c2":  # the gate kept c1: a second champion is needed
                _force(defs, instance, "c2", "the test needs a second champion")
            champions = [e.model_id for e in registry.history()]
            rollback = runner.invoke(app, ["champion", "rollback", "--reason", REASON])
            after_rollback = registry.current()
            cycles.run_cycle("c3")
            if registry.current().cycle_id != "c3":
                _force(defs, instance, "c3", "the test needs a promotion after the rollback")
            report = runner.invoke(app, ["report", "--format", "json"])
            observations = instance.fetch_observations(dg.AssetKey("promotion_decision"), limit=10).records
            yield {
                "home": home,
                "artifacts": artifacts,
                "registry": registry,
                "champions": champions,
                "rollback": rollback,
                "after_rollback": after_rollback,
                "report": report,
                "observations": observations,
            }


def test_the_rollback_restores_the_first_champion(rolled_back: dict[str, Any]) -> None:
    result = rolled_back["rollback"]
    c1, c2 = rolled_back["champions"]
    assert result.exit_code == 0, result.output
    assert f"rolled back to {c1} (was {c2}); decision rollback/1" in result.output
    current = rolled_back["after_rollback"]
    assert (current.model_id, current.rollback, current.replaced) == (c1, True, c2)


def test_the_next_gate_compares_against_the_rolled_back_champion(rolled_back: dict[str, Any]) -> None:
    artifacts: CycleArtifacts = rolled_back["artifacts"]
    c1, _ = rolled_back["champions"]
    eval_doc = artifacts.read("c3", EvalSummaryDoc)
    decision = artifacts.read("c3", PromotionDecisionDoc)
    assert eval_doc.champion is not None and eval_doc.champion.model_id == c1
    assert eval_doc.champion.decision_id == "rollback/1"
    assert decision.champion_before is not None and decision.champion_before.model_id == c1
    assert (decision.decision.reference_kind, decision.decision.reference_id) == ("champion", c1)


def test_history_keeps_every_change_in_order(rolled_back: dict[str, Any]) -> None:
    registry: ChampionRegistry = rolled_back["registry"]
    c1, c2 = rolled_back["champions"]
    history = registry.history()
    assert [(e.cycle_id, e.rollback) for e in history] == [("c1", False), ("c2", False), ("c1", True), ("c3", False)]
    assert history[2].decision_id == "rollback/1" and history[2].decision_reason == REASON
    assert registry.current().cycle_id == "c3"
    listed = json.loads(runner.invoke(app, ["champion", "history", "--json"]).output)["entries"]
    assert [(e["cycle_id"], e["kind"] == "rollback", e["replaced"]) for e in listed[:3]] == [
        ("c3", False, c1),
        ("c1", True, c2),
        ("c2", False, c1),
    ]


def test_the_dagster_instance_has_the_rollback(rolled_back: dict[str, Any]) -> None:
    c1, c2 = rolled_back["champions"]
    [record] = rolled_back["observations"]
    meta = {key: value.value for key, value in record.event_log_entry.asset_observation.metadata.items()}
    assert (meta["reason"], meta["from"], meta["to"]) == (REASON, c2, c1)


def test_the_workflow_log_shows_the_rollback_with_its_reason(rolled_back: dict[str, Any]) -> None:
    c1, c2 = rolled_back["champions"]
    result = rolled_back["report"]
    assert result.exit_code == 0, result.output
    events = json.loads(result.output)["events"]
    [rollback] = [e for e in events if e["kind"] == "rollback"]
    assert f"rolled back from {c2} to {c1}" in rollback["summary"] and REASON in rollback["summary"]
    # In time order: after c2's decision, before c3's first run.
    kinds = [(e["kind"], e["cycle_id"]) for e in events]
    position = kinds.index(("rollback", "c1"))
    assert ("decision", "c2") in kinds[:position]
    assert ("run_start", "c3") in kinds[position:]
    # The workflow_log asset rebuilt by c3's validation_job has it too.
    markdown = (rolled_back["home"] / "reports" / "workflow_log.md").read_text()
    assert f"| rollback | rollback/1: champion rolled back from {c2} to {c1}" in markdown
    assert REASON in markdown
