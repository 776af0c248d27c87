"""Dagster on PostgreSQL: one real cycle with ``KOTONE_DAGSTER_STORAGE=postgres`` against a throwaway cluster.

The instance is built the production way (``open_instance()`` writing DAGSTER_HOME/dagster.yaml from the
environment); the checks read PostgreSQL directly with psycopg2 and through a second, independent instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.metadata import readable_float
from kotone_pipeline.orchestration.runner import CycleRunner, open_instance
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline_tests import pg
from kotone_pipeline_tests.documents import read_json

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(pg.missing_reason() is not None, reason=pg.missing_reason() or ""),
]

BASE_ASSETS = {"catalog", "teacher_pairs", "eval_sets"}
CYCLE_ASSETS = {
    "served_requests",
    "reviewed_requests",
    "eval_summary",
    "hard_dims",
    "augmented_pairs",
    "split_dataset",
    "training_submission",
    "failure_playbook",
    "lexicon_patch",
    "trained_models",
    "validation_snapshot",
    "promotion_decision",
}


@pytest.fixture(scope="module")
def pg_cycle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("pg_cycle")
    with pg.throwaway_cluster() as cluster, pytest.MonkeyPatch.context() as env:
        for name, value in {**cluster.env(), "KOTONE_DAGSTER_STORAGE": "postgres"}.items():
            env.setenv(name, value)
        env.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        home = tmp / "kotone"
        defs = build_definitions(
            {"KOTONE_HOME": str(home), "KOTONE_CAMPAIGN_SIZE": "1", "KOTONE_WANDB_MODE": "disabled"}
        )
        instance = open_instance()
        try:
            report = CycleRunner(defs, instance, poll_interval_s=0.1).run_cycle("c1")
            yield {"cluster": cluster, "instance": instance, "report": report, "home": home, "tmp": tmp}
        finally:
            instance.dispose()


def _query(cluster: pg.PgCluster, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(cluster.url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_instance_config_names_postgres_and_no_sqlite_store_is_created(pg_cycle) -> None:
    dagster_home: Path = pg_cycle["tmp"] / "dagster_home"
    assert "postgresql+psycopg2" in (dagster_home / "dagster.yaml").read_text()
    # The embedded default would have put runs.db / index.db / <run>.db under DAGSTER_HOME.
    assert list(dagster_home.rglob("*.db")) == []


def test_runs_of_the_cycle_are_rows_in_postgres(pg_cycle) -> None:
    runs = _query(pg_cycle["cluster"], "SELECT pipeline_name, status, partition FROM runs")
    assert sorted(runs, key=str) == sorted(
        [("base_job", "SUCCESS", None), ("cycle_job", "SUCCESS", "c1"), ("validation_job", "SUCCESS", "c1")],
        key=str,
    )
    partitions = _query(pg_cycle["cluster"], "SELECT partitions_def_name, partition FROM dynamic_partitions")
    assert partitions == [("cycles", "c1")]


def test_every_asset_materialization_is_an_event_row_in_postgres(pg_cycle) -> None:
    rows = _query(
        pg_cycle["cluster"],
        "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    by_key = {json.loads(key)[0]: partition for key, partition in rows}
    assert len(rows) == len(by_key), "each asset materialized exactly once"
    # workflow_log is unpartitioned and rebuilt by the validation run after the decision.
    assert by_key == {**dict.fromkeys(BASE_ASSETS), **dict.fromkeys(CYCLE_ASSETS, "c1"), "workflow_log": None}


def test_a_second_instance_reads_the_materializations_back(pg_cycle) -> None:
    """A fresh instance from the same config (as a restarted daemon or webserver would build) sees the cycle."""
    report = pg_cycle["report"]
    with open_instance() as other:
        assert other is not pg_cycle["instance"]
        assert list(other.get_dynamic_partitions("cycles")) == ["c1"]
        assert other.get_materialized_partitions(dg.AssetKey("promotion_decision")) == {"c1"}
        event = other.get_latest_materialization_event(dg.AssetKey("promotion_decision"))
        assert event is not None and event.asset_materialization is not None
        metadata = event.asset_materialization.metadata
        assert metadata["decision"].value == report.decision
        decision = read_json(CycleArtifacts(pg_cycle["home"]), "c1", "promotion_decision")["decision"]
        # The UI gets it rounded; the decision document keeps full precision.
        assert metadata["candidate_holdout_mae"].value == readable_float(decision["candidate_holdout_mae"])
        run = other.get_run_by_id(event.run_id)
        assert run is not None and run.job_name == "validation_job" and run.status == dg.DagsterRunStatus.SUCCESS


def test_the_application_role_needs_its_password(pg_cycle) -> None:
    """The instance connected over TCP with the role's password, not through a trust rule."""
    cluster: pg.PgCluster = pg_cycle["cluster"]
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=cluster.host, port=cluster.port, user=cluster.username, password="wrong", dbname=cluster.db_name
        )


def test_a_stopped_cluster_leaves_no_server_and_no_files() -> None:
    with pg.throwaway_cluster() as cluster:
        assert _query(cluster, "SELECT current_user") == [(cluster.username,)]
    assert not cluster.socket_dir.exists()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(cluster.url, connect_timeout=2)
