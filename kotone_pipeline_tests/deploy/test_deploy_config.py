"""deploy/ checked without a cluster: the Helm values against the chart's values schema, the instance the chart
renders from them against dagster-k8s's and Dagster's own config schemas, deploy/dagster.yaml as an instance
loads it, the compose file, the Dockerfile, and a scan for machine paths and secret values."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import pytest
import yaml
from dagster_k8s import K8sRunLauncher

from kotone_pipeline.compat.dagster import dagster_instance_config, process_config
from kotone_pipeline.definitions import defs
from kotone_pipeline.orchestration.jobs import JOBS, RUN_KIND_TAG, cycle_job
from kotone_pipeline.settings import SECRETS
from kotone_pipeline_tests.deploy.config import (
    DEPLOY,
    HELM_VALUES,
    SCHEMA_EXCERPT,
    k8s_instance_config,
    load_yaml,
    scan,
)

PG_ENV = {
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_HOST": "db",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_PORT": "5432",
}
DAGSTER_SERVICES = ("code-server", "daemon", "webserver")


# What the chart's pods have in their environment for the launcher's {env: ...} fields.
CHART_POD_ENV = {
    "DAGSTER_HOME": "/opt/dagster/dagster_home",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "kotone-dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": "kotone-dagster-pipeline-env",
}


@pytest.fixture
def chart_pod_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CHART_POD_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load_yaml(HELM_VALUES)


def _schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA_EXCERPT.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)]


def _instance_dir(tmp_path: Path, config: dict[str, Any]) -> Path:
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path


# --- Helm values ------------------------------------------------------------------------------------


def test_the_helm_values_follow_the_charts_schema(values) -> None:
    assert _schema_errors(values) == []


def test_the_schema_check_catches_a_misspelt_key_and_a_wrong_type(values) -> None:
    """The check is not vacuous: the mistakes an operator makes in a values file fail it."""
    bad = json.loads(json.dumps(values))
    k8s = bad["runLauncher"]["config"]["k8sRunLauncher"]
    k8s["loadInClusterConfig"] = k8s.pop("loadInclusterConfig")
    bad["dagsterDaemon"]["runCoordinator"]["type"] = "QueueRunCoordinator"
    bad["concurrency"]["runs"]["tagConcurrencyLimits"][0]["limit"] = "4"
    errors = "\n".join(_schema_errors(bad))
    assert "loadInClusterConfig" in errors
    assert "QueueRunCoordinator" in errors
    assert "'4' is not of type 'integer'" in errors


def test_the_user_deployment_serves_the_code_location_from_the_image(values) -> None:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", "kotone_pipeline.definitions", "-a", "defs"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}  # run pods get env, secrets, volume
    env = {e["name"]: e for e in deployment["env"]}
    mounts = {m["mountPath"] for m in deployment["volumeMounts"]}
    assert env["KOTONE_HOME"]["value"] in mounts
    # Every secret the project reads comes from a Kubernetes secret, none has a value here.
    for name in SECRETS - {"DAGSTER_PG_PASSWORD"}:  # the chart gives the Postgres password itself
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["key"] == name


def test_the_queue_limits_name_the_tags_and_pool_the_code_uses(values) -> None:
    limits = values["concurrency"]["runs"]["tagConcurrencyLimits"]
    assert {(lim["key"], lim["value"]) for lim in limits} == {(RUN_KIND_TAG, cycle_job.tags[RUN_KIND_TAG])}
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    # The pools' default limit holds every pool: training_submission must be the only op in one.
    pools = {a.key.to_user_string(): a.op.pool for a in defs.assets if isinstance(a, dg.AssetsDefinition) and a.op.pool}
    assert pools == {"training_submission": "training_submission"}
    assert all(RUN_KIND_TAG in job.tags for job in JOBS)


# --- the instance the chart renders -----------------------------------------------------------------


def test_the_k8s_run_launcher_config_passes_dagster_k8s_own_schema(values, chart_pod_env) -> None:
    launcher = k8s_instance_config(values)["run_launcher"]
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, [e.message for e in result.errors or []]
    assert result.value["env_secrets"] == ["kotone-secrets"]
    assert result.value["load_incluster_config"] is True


def test_dagster_k8s_schema_refuses_an_unknown_launcher_field(values, chart_pod_env) -> None:
    config = {**k8s_instance_config(values)["run_launcher"]["config"], "job_imag": "kotone:1"}
    result = process_config(K8sRunLauncher.config_type(), config)
    assert not result.success and "job_imag" in " ".join(e.message for e in result.errors or [])


def test_the_rendered_k8s_instance_loads_as_a_dagster_instance_config(values, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "not-a-real-password")
    config, _ = dagster_instance_config(str(_instance_dir(tmp_path, k8s_instance_config(values))))
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == [
        {"key": RUN_KIND_TAG, "value": "cycle", "limit": 4}
    ]
    assert config["run_monitoring"]["enabled"] is True
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] == 7


# --- deploy/dagster.yaml (single VM) ----------------------------------------------------------------


def test_the_single_vm_instance_loads_with_postgres_the_queue_and_its_limits(tmp_path, monkeypatch) -> None:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"] == {
        "runs": {
            "max_concurrent_runs": 8,
            "tag_concurrency_limits": [{"key": RUN_KIND_TAG, "value": "cycle", "limit": 4}],
        },
        "pools": {"default_limit": 1},
    }
    assert config["run_monitoring"]["enabled"] is True
    assert "retention" in config


def test_the_single_vm_and_k8s_instances_hold_the_same_limits(values) -> None:
    vm = load_yaml(DEPLOY / "dagster.yaml")
    k8s = k8s_instance_config(values)
    assert k8s["concurrency"] == vm["concurrency"]
    # With a pool, a run that dies holding its slot would block the pool for good: both free such slots.
    for instance in (vm, k8s):
        assert 0 < instance["run_monitoring"]["free_slots_after_run_end_seconds"] <= 300


# --- compose, Dockerfile, workspace ------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "compose.yaml")


def test_the_compose_file_has_the_four_services_and_their_variables() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", *DAGSTER_SERVICES}
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert set(PG_ENV) <= set(env), name
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert services[name]["image"] == services["code-server"]["image"]  # one image, built once
    assert services["daemon"]["entrypoint"] == ["dagster-daemon", "run"]
    assert services["webserver"]["entrypoint"] == ["dagster-webserver"]
    assert services["code-server"]["volumes"] == ["kotone-home:/var/lib/kotone"]
    # Secrets only as references to the env file.
    for name in SECRETS:
        for service in DAGSTER_SERVICES:
            value = services[service]["environment"].get(name)
            assert value is None or value.startswith("${"), (service, name)


def test_the_compose_workspace_reaches_the_code_server_on_its_port() -> None:
    (entry,) = load_yaml(DEPLOY / "workspace.yaml")["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "code-server"
    cmd = next(line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD "))[:4] == ["-h", "0.0.0.0", "-p", str(server["port"])]


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    if shutil.which("docker")
    else True,
    reason="no docker compose here; the compose file is checked as YAML above",
)
def test_docker_compose_accepts_the_file() -> None:
    env = {"DAGSTER_PG_PASSWORD": "x", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    done = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


def test_the_dockerfile_serves_the_code_location_and_copies_what_exists() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["dagster", "code-server", "start"]' in text
    assert "-c constraints.txt '.[deploy]'" in text  # the pinned set, with dagster-k8s for run pods
    # Installed (not editable), the package cannot find the repository's data/ beside it: the image names it.
    assert "KOTONE_DATA_DIR=/opt/kotone/data" in text and "COPY data ./data" in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            sources = line.split()[1:-1]
            assert all((DEPLOY.parent / s).exists() for s in sources), line
    for name in SECRETS:
        assert f"ENV {name}" not in text and f"{name}=" not in text


# --- nothing names a machine path or a secret value --------------------------------------------------


def test_nothing_in_deploy_names_a_machine_path_or_a_secret_value() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"]
    assert {p.name for p in files} >= {"Dockerfile", "dagster.yaml", "compose.yaml", "values.yaml", "README.md"}
    problems = [line for p in files for line in scan(p.relative_to(DEPLOY.parent), p.read_text(encoding="utf-8"))]
    assert problems == []


# Token-shaped values are built here, not written out: no secret-looking literal sits in the repository.
PLANTED_HF_TOKEN = "hf_" + "x" * 30
PLANTED_WANDB_KEY = "0a" * 20


@pytest.mark.parametrize(
    "line",
    [
        "      DAGSTER_PG_PASSWORD: hunter2",
        f"HF_TOKEN={PLANTED_HF_TOKEN}",
        f"  token in a comment: {PLANTED_HF_TOKEN}",
        "  postgresqlPassword: s3cret",
        f"WANDB_API_KEY: {PLANTED_WANDB_KEY}",
        "    hostPath: {path: /home/alice/kotone}",
        "COPY /work/main/data ./data",
    ],
)
def test_the_scan_catches_a_planted_secret_or_machine_path(line: str) -> None:
    assert scan(Path("deploy/x"), line) != []


@pytest.mark.parametrize(
    "line",
    [
        "  DAGSTER_PG_PASSWORD: ${DAGSTER_PG_PASSWORD:?set it}",
        "      password: {env: DAGSTER_PG_PASSWORD}",
        "HF_TOKEN=",
        "    mountPath: /var/lib/kotone",
    ],
)
def test_the_scan_lets_references_and_image_paths_through(line: str) -> None:
    assert scan(Path("deploy/x"), line) == []
