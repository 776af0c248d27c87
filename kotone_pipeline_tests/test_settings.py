"""Every setting is validated before anything runs: each error names the variable, its value and what is allowed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.settings import ConfigurationError, Settings, load_settings

BAD = [
    ("KOTONE_MIN_IMPROVEMENT", "nan", "finite number"),
    ("KOTONE_MAX_DIM_REGRESSION", "-0.1", "greater than or equal to 0"),
    ("KOTONE_MAX_HUMAN_REGRESSION", "inf", "finite number"),
    ("KOTONE_ADD_RATIO", "lots", "valid number"),
    ("KOTONE_HF_BUDGET_USD", "0", "greater than 0"),
    ("KOTONE_NIGHTLY_TIMEZONE", "Mars/Olympus", "IANA time zone"),
    ("KOTONE_NIGHTLY_CRON", "61 * * * *", "cron expression"),
    ("KOTONE_ALLOW_STALE", "maybe", "true or false"),
    ("KOTONE_JOB_BACKEND", "aws", "not one of local or hf"),
    ("KOTONE_DATASET_STORE", "s3", "not one of local or hf"),
    ("KOTONE_WANDB_MODE", "loud", "online, offline or disabled"),
    ("KOTONE_TRAINER", "xgboost", "local or lora"),
    ("KOTONE_HARD_DIMS_SOURCE", "vibes", "eval_rows or wandb_failures"),
    ("KOTONE_DAGSTER_STORAGE", "mysql", "sqlite or postgres"),
    ("KOTONE_DATA_DIR", "/nonexistent/kotone-data", "existing directory"),
    ("HF_ENDPOINT", "localhost:8080", "http(s) URL"),
    ("WANDB_BASE_URL", "ftp://wandb.example", "http(s) URL"),
    ("KOTONE_DAGSTER_URL", "http://host:notaport", "numeric port"),
    ("KOTONE_CAMPAIGN_SIZE", "0", "greater than or equal to 1"),
    ("KOTONE_JOB_TIMEOUT_S", "5", "greater than or equal to 60"),
    ("KOTONE_JOB_MAX_STEPS", "0", "greater than or equal to 1"),
    ("KOTONE_SENSOR_INTERVAL_S", "0", "greater than or equal to 1"),
    ("KOTONE_JOB_MAX_TRAIN_ROWS", "many", "valid integer"),
    ("KOTONE_JOB_MAX_PREDICT_ROWS", "-3", "greater than or equal to 1"),
    ("KOTONE_FORCED_HARD_DIMS", "energy,loudness", "unknown dim(s) loudness"),
    ("KOTONE_HF_DATASET_REPO", "no-slash", "expected a repo id such as my-org/kotone-music-params"),
    ("KOTONE_ENCODER_SHA256", "abc", "expected 64 hex digits"),
    ("DAGSTER_PG_PORT", "70000", "less than or equal to 65535"),
    ("KOTONE_WANDB_PROJECT", "team/kotone", "expected a name without /"),
    ("KOTONE_HF_FLAVOR", "A100 large", "expected a flavor such as l4x1"),
]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_setting_is_named_with_its_value_and_what_is_allowed(name, value, allowed) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert f"{name}={value!r}" in message
    assert allowed in message


def test_every_problem_is_reported_at_once_and_unset_or_blank_means_default() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"KOTONE_ADD_RATIO": "x", "KOTONE_JOB_BACKEND": "y", "KOTONE_HOME": "  "})
    lines = str(caught.value).splitlines()
    assert lines[0] == "bad configuration:" and len(lines) == 3
    assert Settings().job_backend == "local"
    assert load_settings({"KOTONE_MIN_IMPROVEMENT": "", "KOTONE_ALLOW_STALE": "off"}).min_improvement == 0.005


def test_a_secret_is_checked_but_never_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"HF_TOKEN": "hf_abc def"})
    assert "HF_TOKEN=(value hidden)" in str(caught.value)
    assert "hf_abc" not in str(caught.value)


def test_settings_from_two_worlds_and_postgres_without_a_host_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="set KOTONE_DATASET_STORE=hf"):
        load_settings({"KOTONE_JOB_BACKEND": "hf"})
    with pytest.raises(ConfigurationError, match="needs DAGSTER_PG_HOST and DAGSTER_PG_DB"):
        load_settings({"KOTONE_DAGSTER_STORAGE": "postgres"})


def test_a_home_that_is_a_file_is_refused(tmp_path) -> None:
    home = tmp_path / "home"
    home.write_text("")
    with pytest.raises(ConfigurationError, match="KOTONE_HOME=.*a file"):
        load_settings({"KOTONE_HOME": str(home)})


@pytest.mark.parametrize("argv", [["status"], ["data", "generate", "--groups", "1"], ["predict", "hello"]])
def test_every_command_checks_the_settings_before_it_starts(tmp_path, argv) -> None:
    env = {"KOTONE_HOME": str(tmp_path / "home"), "KOTONE_MIN_IMPROVEMENT": "nan"}
    result = CliRunner().invoke(app, argv, env=env)
    assert result.exit_code == 2
    assert "KOTONE_MIN_IMPROVEMENT='nan': expected a finite number" in result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert not (tmp_path / "home").exists()  # nothing ran, nothing was written


def test_the_code_location_refuses_to_load_with_a_bad_setting() -> None:
    from kotone_pipeline.definitions import build_definitions

    with pytest.raises(ConfigurationError, match="KOTONE_WANDB_MODE='loud'"):
        build_definitions({"KOTONE_WANDB_MODE": "loud"})


def test_help_is_shown_even_with_a_bad_setting() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    kotone = str(Path(sys.executable).parent / "kotone")
    env = {**os.environ, "KOTONE_MIN_IMPROVEMENT": "nan"}
    shown = subprocess.run([kotone, "status", "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "Usage: kotone status" in shown.stdout
    refused = subprocess.run([kotone, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "KOTONE_MIN_IMPROVEMENT='nan'" in refused.stderr


def test_the_domain_is_handed_its_places_from_the_settings(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kotone_pipeline.domain.data.paths import REPOSITORY_DATA_DIR, places

    home = tmp_path / "home"
    defaults = load_settings({"KOTONE_HOME": str(home)}).places()
    assert defaults.data_dir == REPOSITORY_DATA_DIR and defaults.encoder == "default"
    assert defaults.embeddings_dir == home / "cache" / "embeddings"
    assert defaults.encoders_dir == home / "cache" / "encoders"
    assert defaults.encoder_sha256 is None and defaults.hf_endpoint is None
    env = {
        "KOTONE_HOME": str(home),
        "KOTONE_DATA_DIR": str(tmp_path),
        "KOTONE_ENCODER": "org/encoder@v1",
        "KOTONE_ENCODER_SHA256": "AB" * 32,
        "KOTONE_EMBEDDING_CACHE": str(tmp_path / "shared"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    given = load_settings(env).places()
    assert given.data_dir == tmp_path and given.encoder == "org/encoder@v1"
    assert given.encoder_sha256 == "ab" * 32  # pinned in any case, compared in lower case
    assert given.embeddings_dir == tmp_path / "shared" and given.hf_endpoint == "http://127.0.0.1:9"
    # The installed provider reads the settings on every ask: a changed variable is seen at once.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert places() == given
