"""hard_dims with source wandb_failures: an unreachable W&B fails clearly, or uses a recorded stale snapshot."""

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from kotone_pipeline.definitions import ALL_ASSETS, build_definitions
from kotone_pipeline.orchestration.checks import all_checks
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.wandb_failures import snapshot_path
from kotone_pipeline_tests.documents import read_json


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_API_KEY", "fake-wandb-key-for-tests-0123456789abcdef")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    home = tmp_path / "kotone"

    def run(extra: dict[str, str]):
        env = {"KOTONE_HOME": str(home), "KOTONE_WANDB_MODE": "disabled", "KOTONE_HARD_DIMS_SOURCE": "wandb_failures"}
        env["KOTONE_WANDB_TIMEOUT_S"] = "2"
        defs = build_definitions({**env, **extra})
        return dg.materialize(
            [*ALL_ASSETS, *all_checks],
            selection=["hard_dims"],
            partition_key="w1",
            instance=instance,
            resources=dict(defs.resources or {}),
            raise_on_error=False,
        )

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("cycles", ["w1"])
        defs = build_definitions({"KOTONE_HOME": str(home), "KOTONE_WANDB_MODE": "disabled"})
        dg.materialize(
            [*ALL_ASSETS, *all_checks],
            selection=["eval_summary"],
            partition_key="w1",
            instance=instance,
            resources=dict(defs.resources or {}),
        )
        yield home, run


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [event] = [e for e in result.all_events if e.is_step_failure]
    return event.event_specific_data.error.message  # type: ignore[union-attr]


def test_unreachable_wandb_fails_the_asset_with_a_clear_message(evaluated) -> None:
    home, run = evaluated
    result = run({})
    assert not result.success
    message = failure_message(result)
    assert "W&B unreachable at http://127.0.0.1:" in message
    assert "allow_stale" in message
    assert not CycleArtifacts(home).has("w1", "hard_dims")


def test_allow_stale_uses_the_last_snapshot_and_records_its_age(evaluated) -> None:
    home, run = evaluated
    rows = CycleArtifacts(home).read_eval_rows("w1", "eval_rows_probe")
    worst = sorted(rows, key=lambda r: -r.row_mae)[:10]
    fetched = datetime.now(UTC) - timedelta(hours=30)
    snap = snapshot_path(home, "kotone")
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.write_text(
        json.dumps(
            {
                "project": "kotone",
                "entity": None,
                "host": "https://api.wandb.ai",
                "run_id": "abc123",
                "table": "top_failures",
                "fetched_at": fetched.isoformat(),
                "snapshot_path": str(snap),
                "rows": [
                    {
                        "pair_id": r.pair_id,
                        "source_type": r.source_type,
                        "text": r.text,
                        "target": r.target.as_dict(),
                        "prediction": r.prediction.as_dict(),
                        "row_mae": r.row_mae,
                    }
                    for r in worst
                ],
            }
        )
    )
    result = run({"KOTONE_ALLOW_STALE": "true"})
    assert result.success
    doc = read_json(CycleArtifacts(home), "w1", "hard_dims")
    assert doc["source"] == "wandb_failures"
    assert doc["wandb_failures_stale"] is True
    assert doc["wandb_failures_snapshot_age_s"] >= 30 * 3600 - 60
    [materialization] = result.get_asset_materialization_events()
    assert materialization.materialization.metadata["wandb_failures_stale"].value == "True"
