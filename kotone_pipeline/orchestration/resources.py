"""Dagster resources: thin configurable wrappers that build the domain's service implementations.

Every setting comes from configuration (environment variables via ``resources_from_env``), so the same
graph runs on the embedded default and in production without code changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string
from pydantic import Field

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.datasets import DatasetStore
from kotone_pipeline.services.home import kotone_home
from kotone_pipeline.services.jobs import JobBackend
from kotone_pipeline.services.tracker import Tracker, tracker_from_env, tracker_mode_from_env, wandb_host
from kotone_pipeline.settings import ConfigurationError, check_settings, check_world


def resolve_home(home: str = "") -> Path:
    """An explicitly configured home wins; otherwise ``KOTONE_HOME`` / ``./.kotone``."""
    return Path(home).expanduser().absolute() if home else kotone_home()


def secret_value(value: str | None) -> str | None:
    """A secret field's value: an ``EnvVar`` is read from the environment only when it is used (a resource
    bound by ``bind_from_environment`` never goes through Dagster's config processing, which would read it)."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value


class KotoneHomeResource(dg.ConfigurableResource):
    """Root of all local state (``KOTONE_HOME``, default ``./.kotone``)."""

    home: str = ""

    def artifacts(self) -> CycleArtifacts:
        return CycleArtifacts(resolve_home(self.home))


class LoopSettings(dg.ConfigurableResource):
    """Knobs of the improvement loop; mirrors ``LoopConfig`` field by field (a test keeps them equal)."""

    trainer: str = "local"
    campaign_size: int = 2
    hard_dim_k: int = 2
    forced_hard_dims: list[str] = Field(default_factory=list)
    hard_dims_source: str = "eval_rows"
    allow_stale: bool = False
    wandb_timeout_s: int = 20
    add_ratio: float = 0.2
    replay_ratio: float = 0.15
    split_seed: int = 20261125
    job_timeout_s: int | None = None
    job_max_steps: int | None = None
    job_max_train_rows: int | None = None
    job_max_predict_rows: int | None = None
    min_improvement: float = 0.005
    max_dim_regression: float = 0.15
    max_human_regression: float = 0.05
    min_json_valid_rate: float = 0.98
    nightly_cron: str = "0 2 * * *"
    nightly_timezone: str = "UTC"

    def config(self) -> LoopConfig:
        return LoopConfig(**{name: getattr(self, name) for name in LoopConfig.model_fields})


class JobBackendResource(dg.ConfigurableResource):
    """Where training runs: ``local`` subprocesses (default) or ``hf`` (Hugging Face Jobs)."""

    kind: str = "local"
    home: str = ""
    hf_namespace: str = ""
    hf_token: str | None = None
    hf_endpoint: str | None = None
    hf_flavor: str = "a10g-small"
    hf_budget_usd_per_cycle: float = 10.0
    hf_scheduling_limit_s: int = 3600

    def get_backend(self) -> JobBackend:
        if self.kind == "local":
            from kotone_pipeline.services.local_jobs import LocalJobBackend

            return LocalJobBackend(CycleArtifacts(resolve_home(self.home)).jobs_dir)
        if self.kind == "hf":
            from kotone_pipeline.services.hf_jobs import HfJobsBackend

            return HfJobsBackend(
                namespace=self.hf_namespace,
                token=secret_value(self.hf_token),
                endpoint=self.hf_endpoint,
                flavor=self.hf_flavor,
                budget_usd_per_cycle=self.hf_budget_usd_per_cycle,
                scheduling_limit_s=self.hf_scheduling_limit_s,
            )
        raise ValueError(f"unknown job backend {self.kind!r}: use 'local' or 'hf'")


class DatasetStoreResource(dg.ConfigurableResource):
    """Where split datasets are published: ``local`` directories or an ``hf`` dataset repo."""

    kind: str = "local"
    home: str = ""
    hf_repo_id: str = ""
    hf_token: str | None = None
    hf_endpoint: str | None = None
    # The script published in each dataset commit, which HF Jobs run from its pinned URL; empty: the
    # package's kotone_pipeline/training/train_lora.py.
    hf_training_script: str = ""

    def get_store(self) -> DatasetStore:
        if self.kind == "local":
            from kotone_pipeline.services.local_datasets import LocalDatasetStore

            return LocalDatasetStore(CycleArtifacts(resolve_home(self.home)).datasets_dir)
        if self.kind == "hf":
            from kotone_pipeline.services.hf_datasets import HfHubDatasetStore

            repo, token, endpoint = self.hf_repo_id, secret_value(self.hf_token), self.hf_endpoint

            if self.hf_training_script:
                script = Path(self.hf_training_script).expanduser()
                if not script.is_file():
                    raise ConfigurationError(f"KOTONE_HF_TRAINING_SCRIPT: {script} is not a file")
                return HfHubDatasetStore(
                    repo_id=self.hf_repo_id, token=token, endpoint=endpoint, training_script=script
                )
            return HfHubDatasetStore(repo_id=repo, token=token, endpoint=endpoint)
        raise ValueError(f"unknown dataset store {self.kind!r}: use 'local' or 'hf'")


class ChampionRegistryResource(dg.ConfigurableResource):
    """The champion registry; only the ``promotion_decision`` asset changes it."""

    home: str = ""

    def get_registry(self) -> ChampionRegistry:
        return ChampionRegistry(CycleArtifacts(resolve_home(self.home)).registry_dir)


def dagster_wandb_login(api_key: str, host: str) -> dict[str, Any]:
    """Log in through dagster-wandb's ``wandb_resource``: ``{"sdk": wandb, "api": ..., "host": ...}``.

    That resource is the one place where the key and host meet ``wandb.login``; invoking it directly
    (rather than as a job resource) lets the tracker resource keep its Pythonic configuration."""
    from dagster_wandb import wandb_resource

    context = dg.build_init_resource_context(config={"api_key": api_key, "host": host})
    return wandb_resource(context)


class TrackerResource(dg.ConfigurableResource):
    """W&B: ``online`` when WANDB_API_KEY is set, ``offline`` by default, ``disabled`` on request.

    Online, runs log in through dagster-wandb's ``wandb_resource`` with ``api_key`` / ``host`` (defaults:
    ``WANDB_API_KEY`` / ``WANDB_BASE_URL``). Offline and disabled never log in."""

    mode: str = ""  # empty: decided from the environment (KOTONE_WANDB_MODE, then WANDB_API_KEY)
    project: str = "kotone"
    entity: str = ""
    home: str = ""
    api_key: str | None = None  # a dg.EnvVar in resources_from_env, so the value never sits in config
    host: str = ""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.mode:
            env["KOTONE_WANDB_MODE"] = self.mode
        env["KOTONE_WANDB_PROJECT"] = self.project
        if self.entity:
            env["WANDB_ENTITY"] = self.entity
        api_key = secret_value(self.api_key)
        if api_key:
            env["WANDB_API_KEY"] = api_key
        if self.host:
            env["WANDB_BASE_URL"] = self.host
        return env

    def get_tracker(self) -> Tracker:
        env = self.env()
        home = resolve_home(self.home)
        api_key = env.get("WANDB_API_KEY", "").strip()
        if tracker_mode_from_env(env) != "online" or not api_key:
            # Offline/disabled: no login at all. Online without a key (forced by KOTONE_WANDB_MODE):
            # wandb falls back to its own credentials (~/.netrc from `wandb login`), as before.
            return tracker_from_env(env, home)
        host = wandb_host(env)
        handle: dict[str, Any] = {}

        def login_once() -> dict[str, Any]:
            # One login per tracker, however many runs it starts.
            if not handle:
                handle.update(dagster_wandb_login(api_key, host))
            return handle

        return tracker_from_env(env, home, api_factory=login_once)

    @property
    def resolved_mode(self) -> str:
        return tracker_mode_from_env(self.env())


def _number(env: Mapping[str, str], name: str, default: str, kind: type) -> Any:
    raw = env.get(name, default)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}: expected a {kind.__name__}, got {raw!r}") from None


def resources_from_env(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """Build every resource from ``KOTONE_*`` variables (see the README's configuration table).

    Raises ``ConfigurationError`` for settings that cannot work together (see ``check_world``)."""
    env = os.environ if env is None else env
    check_settings(env)  # every variable, each error naming it, before anything is built
    home = env.get("KOTONE_HOME", "")
    secret_token = dg.EnvVar("HF_TOKEN") if env.get("HF_TOKEN") else None
    loop = LoopConfig.from_env(env)
    if not is_valid_cron_string(loop.nightly_cron):
        raise ConfigurationError(f"KOTONE_NIGHTLY_CRON: {loop.nightly_cron!r} is not a valid cron expression")
    backend_kind = env.get("KOTONE_JOB_BACKEND", "local")
    store_kind = env.get("KOTONE_DATASET_STORE", "local")
    if backend_kind == "hf" and not env.get("KOTONE_TRAINER"):
        loop = loop.model_copy(update={"trainer": "lora"})  # the only trainer HF Jobs run
    check_world(backend_kind, store_kind, loop.trainer)
    settings = LoopSettings(**loop.model_dump())
    return {
        "kotone_home": KotoneHomeResource(home=home),
        "loop_settings": settings,
        "job_backend": JobBackendResource(
            kind=backend_kind,
            home=home,
            hf_namespace=env.get("KOTONE_HF_NAMESPACE", ""),
            hf_token=secret_token,
            hf_endpoint=env.get("HF_ENDPOINT") or None,
            hf_flavor=env.get("KOTONE_HF_FLAVOR", "a10g-small"),
            hf_budget_usd_per_cycle=_number(env, "KOTONE_HF_BUDGET_USD", "10", float),
            hf_scheduling_limit_s=_number(env, "KOTONE_HF_SCHEDULING_LIMIT_S", "3600", int),
        ),
        "dataset_store": DatasetStoreResource(
            kind=store_kind,
            home=home,
            hf_repo_id=env.get("KOTONE_HF_DATASET_REPO", ""),
            hf_token=secret_token,
            hf_endpoint=env.get("HF_ENDPOINT") or None,
            hf_training_script=env.get("KOTONE_HF_TRAINING_SCRIPT", ""),
        ),
        "champion_registry": ChampionRegistryResource(home=home),
        "tracker": TrackerResource(
            mode=env.get("KOTONE_WANDB_MODE", ""),
            project=env.get("KOTONE_WANDB_PROJECT", "kotone"),
            entity=env.get("WANDB_ENTITY", ""),
            home=home,
            api_key=dg.EnvVar("WANDB_API_KEY") if env.get("WANDB_API_KEY") else None,
            host=env.get("WANDB_BASE_URL", ""),
        ),
    }


def bind_from_environment(resources: Mapping[str, dg.ConfigurableResource]) -> dict[str, dg.ResourceDefinition]:
    """The code location's resources, settled from the environment when it loads, with no run config.

    Bound as configured, a Pythonic resource's every field becomes a default of the run config schema,
    which the launchpad pre-fills: ~45 lines of paths and gate thresholds, easy to change by accident
    for one run. Bound as is, the launchpad shows only the config a person should edit (the forced
    promotion's reason). Settings change through ``KOTONE_*`` variables (README), as they do for the
    CLI; secrets stay ``EnvVar`` references, read when used. ``configured_resource`` gives the typed
    resource back (the CLI reads paths and backends from it)."""
    bound = {}
    for key, resource in resources.items():
        summary = (type(resource).__doc__ or key).strip().split("\n\n")[0]
        description = " ".join(summary.split()).replace("``", "`")  # the UI shows it as one plain line
        definition = dg.ResourceDefinition.hardcoded_resource(resource, description=description)
        definition._kotone_resource = resource  # type: ignore[attr-defined]
        bound[key] = definition
    return bound


def configured_resource(resource: Any) -> Any:
    """The typed resource behind a ``bind_from_environment`` definition (or the resource itself)."""
    return getattr(resource, "_kotone_resource", resource)
