"""The deployment's files as data: the Helm values rendered to the instance config the chart writes, and the
scan for machine paths and secret values.

``k8s_instance_config`` follows the chart's templates (helm/dagster/templates/configmap-instance.yaml and
helpers/instance/_run-launcher.tpl, _concurrency.tpl in dagster-io/dagster) for the blocks Kotone sets: the
run launcher, the run coordinator, concurrency, run monitoring, retention and telemetry. No cluster and no
``helm`` binary are needed; the result is what dagster-k8s and the instance validate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
SCHEMA_EXCERPT = Path(__file__).with_name("helm_values_schema_excerpt.json")
RELEASE_NAMESPACE = "kotone"  # what `helm install -n kotone` gives .Release.Namespace


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _postgres_block(values: dict[str, Any]) -> dict[str, Any]:
    pg = values["postgresql"]
    return {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "scheme": pg.get("postgresqlScheme", "postgresql"),
        }
    }


def _run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher", launcher["type"]
    k8s = launcher["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or RELEASE_NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": values["global"]["serviceAccountName"],
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}]
        + [c["name"] for c in k8s.get("envConfigMaps", []) if "name" in c],
    }
    if k8s.get("kubeconfigFile"):
        config["kubeconfig_file"] = k8s["kubeconfigFile"]
    if k8s.get("envSecrets"):
        config["env_secrets"] = [s["name"] for s in k8s["envSecrets"] if "name" in s]
    # The chart passes these through as they are (toYaml).
    for key, name in (
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("resources", "resources"),
        ("failPodOnRunFailure", "fail_pod_on_run_failure"),
        ("runK8sConfig", "run_k8s_config"),
        ("labels", "labels"),
    ):
        if k8s.get(key) not in (None, [], {}):
            config[name] = k8s[key]
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def _concurrency(values: dict[str, Any]) -> dict[str, Any]:
    block = values.get("concurrency") or {}
    pools, runs = block.get("pools") or {}, block.get("runs") or {}
    out: dict[str, Any] = {}
    if pools.get("defaultLimit") is not None:
        out["pools"] = {"default_limit": pools["defaultLimit"]}
    run_limits: dict[str, Any] = {}
    if runs.get("maxConcurrentRuns") is not None:
        run_limits["max_concurrent_runs"] = runs["maxConcurrentRuns"]
    if runs.get("tagConcurrencyLimits"):
        run_limits["tag_concurrency_limits"] = [
            {k: v for k, v in limit.items() if k in ("key", "value", "limit")} for limit in runs["tagConcurrencyLimits"]
        ]
    if run_limits:
        out["runs"] = run_limits
    return out


def k8s_instance_config(values: dict[str, Any]) -> dict[str, Any]:
    """The dagster.yaml the chart renders into its instance ConfigMap, for the blocks Kotone sets."""
    daemon = values["dagsterDaemon"]
    storage = {"module": "dagster_postgres", "config": _postgres_block(values)}
    instance: dict[str, Any] = {
        "run_storage": {**storage, "module": "dagster_postgres.run_storage", "class": "PostgresRunStorage"},
        "event_log_storage": {**storage, "module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage"},
        "schedule_storage": {
            **storage,
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
        },
        "run_launcher": _run_launcher(values),
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    coordinator = daemon["runCoordinator"]
    if daemon["enabled"] and coordinator["enabled"]:
        assert coordinator["type"] == "QueuedRunCoordinator", coordinator["type"]
        queued = coordinator["config"]["queuedRunCoordinator"] or {}
        names = {
            "maxConcurrentRuns": "max_concurrent_runs",
            "tagConcurrencyLimits": "tag_concurrency_limits",
            "dequeueIntervalSeconds": "dequeue_interval_seconds",
            "dequeueNumWorkers": "dequeue_num_workers",
            "dequeueUseThreads": "dequeue_use_threads",
        }
        instance["run_coordinator"] = {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {names[k]: v for k, v in queued.items() if v is not None},
        }
    concurrency = _concurrency(values)
    if values.get("concurrency", {}).get("enabled") and concurrency:
        instance["concurrency"] = concurrency
    monitoring = daemon.get("runMonitoring") or {}
    if daemon["enabled"] and monitoring.get("enabled"):
        instance["run_monitoring"] = {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            **(
                {"max_resume_run_attempts": monitoring["maxResumeRunAttempts"]}
                if monitoring.get("maxResumeRunAttempts") is not None
                else {}
            ),
            "free_slots_after_run_end_seconds": monitoring.get("freeSlotsAfterRunEndSeconds"),
        }
    retention = values.get("retention") or {}
    if retention.get("enabled"):
        instance["retention"] = {
            kind: {"purge_after_days": retention[kind]["purgeAfterDays"]}
            for kind in ("sensor", "schedule")
            if retention.get(kind)
        }
    return instance


# --- the scan -------------------------------------------------------------------------------------

# Paths of a machine (a developer's, this one's) as opposed to paths inside the image, which deploy/
# names on purpose (/opt/dagster/dagster_home, /var/lib/kotone).
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/home/|/Users/|/root/|/tmp/|/mnt/|~/|[A-Za-z]:\\)")
SECRET_SHAPES = {
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    "a 40-hex key (W&B API key shape)": re.compile(r"\b[0-9a-f]{40}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
SECRET_NAMES = (
    "HF_TOKEN",
    "WANDB_API_KEY",
    "KOTONE_REVIEW_TOKEN",
    "DAGSTER_PG_PASSWORD",
    "POSTGRES_PASSWORD",
    "postgresqlPassword",
    "password",
)
# NAME: value / NAME=value, where value is not a reference (${...}, {env: ...}, a secretKeyRef) and not empty.
_ASSIGNMENT = re.compile(r"^\s*-?\s*(?P<name>[A-Za-z_]+)\s*[:=]\s*(?P<value>[^#\s].*?)\s*$")
_REFERENCE = re.compile(r"^(\$\{[A-Z_]+(:?[-?][^}]*)?\}|\{\s*env:\s*[A-Z_]+\s*\}|\"\"|'')$")


def scan(path: Path, text: str) -> list[str]:
    """``file:line: what`` for each machine path or secret value in a deploy file."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        if MACHINE_PATH.search(line):
            problems.append(f"{where}: names a machine path: {line.strip()}")
        problems += [f"{where}: holds {what}" for what, shape in SECRET_SHAPES.items() if shape.search(line)]
        match = _ASSIGNMENT.match(line)
        if match and match["name"] in SECRET_NAMES and not _REFERENCE.match(match["value"]):
            problems.append(f"{where}: sets {match['name']} to a value (name a secret or a variable instead)")
    return problems
