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

from kotone_pipeline.compat.dagster import is_valid_cron_string
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.datasets import DatasetStore
from kotone_pipeline.services.home import kotone_home
from kotone_pipeline.services.jobs import JobBackend
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline.services.state_places import StatePlace, champion_registry, cycle_artifacts
from kotone_pipeline.services.tracker import Tracker, tracker_mode_from_env, wandb_host
from kotone_pipeline.services.wandb_tracker import tracker_from_env
from kotone_pipeline.settings import ConfigurationError, default, load_settings


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
    state_store: str = "local"
    hf_state_repo: str = ""
    hf_token: str | None = None
    hf_endpoint: str | None = None

    def artifacts(self) -> CycleArtifacts:
        return cycle_artifacts(resolve_home(self.home), _place(self))

    def request_log(self) -> RequestLog:
        """The log of served requests and people's reviews (``kotone serve`` and ``kotone review`` write it)."""
        return RequestLog(resolve_home(self.home))


class LoopSettings(dg.ConfigurableResource):
    """Knobs of the improvement loop (the ``KOTONE_*`` loop settings), as the ``LoopConfig`` steps take."""

    # The LoopConfig as JSON: its fields are declared once, in Settings (one field per variable).
    loop_config_json: str = ""

    @classmethod
    def of(cls, config: LoopConfig) -> LoopSettings:
        return cls(loop_config_json=config.model_dump_json())

    def config(self) -> LoopConfig:
        return LoopConfig.model_validate_json(self.loop_config_json) if self.loop_config_json else LoopConfig()


class JobBackendResource(dg.ConfigurableResource):
    """Where training runs: ``local`` subprocesses (default) or ``hf`` (Hugging Face Jobs)."""

    kind: str = "local"
    home: str = ""
    hf_namespace: str = ""
    hf_token: str | None = None
    hf_endpoint: str | None = None
    hf_flavor: str = default("hf_flavor")
    hf_budget_usd_per_cycle: float = default("hf_budget_usd")
    hf_scheduling_limit_s: int = default("hf_scheduling_limit_s")

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
    state_store: str = "local"
    hf_state_repo: str = ""
    hf_token: str | None = None
    hf_endpoint: str | None = None

    def get_registry(self) -> ChampionRegistry:
        return champion_registry(resolve_home(self.home), _place(self))


def _place(resource: KotoneHomeResource | ChampionRegistryResource) -> StatePlace:
    """The state store a resource names (the token is read from the environment only now)."""
    return StatePlace(
        resource.state_store, resource.hf_state_repo, secret_value(resource.hf_token), resource.hf_endpoint
    )


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
    project: str = default("wandb_project")
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


def resources_from_env(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """Build every resource from the settings (``load_settings``: the README's configuration table).

    Raises ``ConfigurationError`` naming each bad variable, or settings that cannot work together."""
    settings = load_settings(env)
    if not is_valid_cron_string(settings.nightly_cron):
        raise ConfigurationError(f"KOTONE_NIGHTLY_CRON: {settings.nightly_cron!r} is not a valid cron expression")
    home = settings.home or ""
    # Secrets stay references, read from the environment only when a backend is built.
    secret_token = dg.EnvVar("HF_TOKEN") if settings.hf_token else None
    state: dict[str, Any] = {
        "state_store": settings.state_store,
        "hf_state_repo": settings.hf_state_repo or "",
        "hf_token": secret_token,
        "hf_endpoint": settings.hf_endpoint,
    }
    return {
        "kotone_home": KotoneHomeResource(home=home, **state),
        "loop_settings": LoopSettings.of(LoopConfig.from_settings(settings)),
        "job_backend": JobBackendResource(
            kind=settings.job_backend,
            home=home,
            hf_namespace=settings.hf_namespace or "",
            hf_token=secret_token,
            hf_endpoint=settings.hf_endpoint,
            hf_flavor=settings.hf_flavor,
            hf_budget_usd_per_cycle=settings.hf_budget_usd,
            hf_scheduling_limit_s=settings.hf_scheduling_limit_s,
        ),
        "dataset_store": DatasetStoreResource(
            kind=settings.dataset_store,
            home=home,
            hf_repo_id=settings.hf_dataset_repo or "",
            hf_token=secret_token,
            hf_endpoint=settings.hf_endpoint,
            hf_training_script=settings.hf_training_script or "",
        ),
        "champion_registry": ChampionRegistryResource(home=home, **state),
        "tracker": TrackerResource(
            mode=settings.wandb_mode or "",
            project=settings.wandb_project,
            entity=settings.wandb_entity or "",
            home=home,
            api_key=dg.EnvVar("WANDB_API_KEY") if settings.wandb_api_key else None,
            host=settings.wandb_base_url or "",
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
