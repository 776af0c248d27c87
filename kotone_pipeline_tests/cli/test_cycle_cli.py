"""The cycle commands as a user runs them: real console script, temporary KOTONE_HOME."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

KOTONE = str(Path(sys.executable).parent / "kotone")
DEMO_KEYS = {
    "cycle_id",
    "champion_holdout_mae_before",
    "candidate_holdout_mae",
    "champion_holdout_mae_after",
    "reference_human_mae_before",
    "candidate_human_mae",
    "champion_human_mae_after",
    "rule_holdout_mae",
    "rule_human_mae",
    "hard_dims",
    "rows_added",
    "decision",
    "wall_s",
    "field_rows",
    "decided_by",
    "reference_field_mae_before",
    "candidate_field_mae",
    "champion_field_mae_after",
    "reviewed",
}


def kotone(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KOTONE_HOME": str(home),
        "KOTONE_WANDB_MODE": "disabled",
        "KOTONE_CAMPAIGN_SIZE": "1",
    }
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([KOTONE, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_demo_json_then_status_show_the_cycle_and_its_champion(tmp_path: Path) -> None:
    demo = kotone(tmp_path, "demo", "--cycles", "1", "--json")
    assert demo.returncode == 0, demo.stderr[-2000:]
    shown = json.loads(demo.stdout)
    [cycle] = shown["cycles"]
    assert set(cycle) == DEMO_KEYS
    assert shown["setup_s"] > 0 and "setup done in" in demo.stderr  # a fresh home: the base assets, once
    assert cycle["cycle_id"] == "demo-001"
    assert cycle["champion_holdout_mae_before"] is None  # no champion before the first cycle
    assert cycle["decision"] in {"promote", "keep"}
    assert cycle["rows_added"] > 0 and len(cycle["hard_dims"]) == 2
    assert cycle["rule_holdout_mae"] > 0 and cycle["rule_human_mae"] > 0  # the rule baseline beside the champion
    # Where the workflow log is: written by the cycle's validation run.
    assert shown["report"]["html"] == str(tmp_path / "reports" / "workflow_log.html")
    assert Path(shown["report"]["html"]).is_file() and Path(shown["report"]["md"]).is_file()
    assert "cycle demo-001" in demo.stderr  # progress goes to stderr, the JSON alone to stdout
    assert "[demo-001] eval_summary" in demo.stderr  # the cycle id in brackets is text, not a markup tag
    # Piped output: one progress line per change of the jobs' state while they train, none repeated.
    waiting = [" ".join(line.split()[:-2]) for line in demo.stderr.splitlines() if "training jobs: r0" in line]
    assert waiting and len(waiting) == len(set(waiting))

    status = kotone(tmp_path, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    state = json.loads(status.stdout)
    assert state["cycles"] == [{"cycle_id": "demo-001", "stage": "promotion_decision", "decision": cycle["decision"]}]
    if cycle["decision"] == "promote":
        assert state["champion"]["holdout_mae"] == cycle["candidate_holdout_mae"]
    _assert_one_run_history(tmp_path / "dagster")


def _assert_one_run_history(dagster_home: Path) -> None:
    """The demo's runs came through the code location (as UI runs do), validation from the sensor's ticks."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        runs = {run.job_name: run for run in instance.get_runs()}
        assert set(runs) == {"base_job", "cycle_job", "validation_job"}
        # The demo's cycle_job and the sensor's validation_job carry the same cycle tags: one filter finds both.
        for name in ("cycle_job", "validation_job"):
            assert runs[name].tags.get("kotone/cycle") == "demo-001", (name, runs[name].tags)
            assert runs[name].tags.get("dagster/partition") == "demo-001", (name, runs[name].tags)
        for run in runs.values():
            assert run.remote_job_origin is not None, run.job_name
            assert run.remote_job_origin.location_name == "kotone_pipeline"
        validation = runs["validation_job"]
        assert validation.tags.get("dagster/sensor_name") == "training_jobs_sensor"
        [sensor] = [s for s in instance.all_instigator_state() if s.instigator_name == "training_jobs_sensor"]
        ticks = instance.get_ticks(sensor.instigator_origin_id, sensor.selector_id)
        assert any(validation.run_id in tick.run_ids for tick in ticks)
    finally:
        instance.dispose()


def test_cycle_new_rejects_a_bad_id_without_a_traceback(tmp_path: Path) -> None:
    result = kotone(tmp_path, "cycle", "new", "Bad ID!")
    assert result.returncode == 2
    assert "invalid cycle id 'Bad ID!'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cycle_new_adds_a_partition_once(tmp_path: Path) -> None:
    first = kotone(tmp_path, "cycle", "new", "exp-1")
    again = kotone(tmp_path, "cycle", "new", "exp-1")
    assert first.returncode == again.returncode == 0
    assert first.stdout.strip() == again.stdout.strip() == "exp-1"
    status = json.loads(kotone(tmp_path, "status", "--json").stdout)
    assert status["cycles"] == [{"cycle_id": "exp-1", "stage": "created", "decision": None}]
    assert status["champion"] is None


def test_cycle_new_smoke_needs_run_and_the_lora_trainer(tmp_path: Path) -> None:
    alone = kotone(tmp_path, "cycle", "new", "first", "--smoke")
    assert alone.returncode == 2 and "error: --smoke needs --run" in alone.stderr
    local = kotone(tmp_path, "cycle", "new", "first", "--run", "--smoke")
    assert local.returncode == 2 and "set KOTONE_JOB_BACKEND=hf" in local.stderr
    assert "Traceback" not in local.stderr + alone.stderr
    assert json.loads(kotone(tmp_path, "status", "--json").stdout)["cycles"] == []  # nothing was created


def test_smoke_settings_fill_only_what_is_not_set() -> None:
    from kotone_pipeline.cli.cycle import apply_smoke_settings
    from kotone_pipeline.cycle.config import LoopConfig
    from kotone_pipeline.settings import load_settings

    env = {"KOTONE_JOB_BACKEND": "hf", "KOTONE_JOB_MAX_STEPS": "10"}
    applied = apply_smoke_settings(env)
    assert applied == {
        "KOTONE_CAMPAIGN_SIZE": "1",
        "KOTONE_JOB_MAX_TRAIN_ROWS": "32",
        "KOTONE_JOB_MAX_PREDICT_ROWS": "32",
    }
    config = LoopConfig.from_settings(load_settings({**env, "KOTONE_TRAINER": "lora", "KOTONE_DATASET_STORE": "hf"}))
    assert (config.campaign_size, config.job_max_steps, config.job_max_train_rows) == (1, 10, 32)


def test_status_says_how_many_served_requests_wait_for_review(tmp_path: Path) -> None:
    from kotone_pipeline.domain.data.dims import DIMS
    from kotone_pipeline.services.request_log import RequestLog

    empty = kotone(tmp_path, "status")
    assert empty.returncode == 0 and "none logged yet" in empty.stdout
    log = RequestLog(tmp_path)
    ids = [f"req_{i}" for i in range(3)]
    log.append(
        [
            {"request_id": i, "text": f"song {i}", "source_type": "request_text", "model_id": "m",
             "prediction": dict.fromkeys(DIMS, 5), "latency_ms": 1.0}
            for i in ids
        ]
    )  # fmt: skip
    log.add_review(ids[0], "aiko", "skip")
    shown = json.loads(kotone(tmp_path, "status", "--json").stdout)["review"]
    assert (shown["logged"], shown["waiting_for_review"], shown["reviews"]) == (3, 2, 1)
    text = kotone(tmp_path, "status").stdout
    assert "3 served and logged, 2 waiting for review" in " ".join(text.split()) and "kotone review" in text
