"""The W&B tracker: one run per asset materialization, grouped by cycle id, online or offline (``wandb sync``
later); the disabled mode's run validates and stores nothing. The interface is ``tracker.py``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads only when a table is built: the code location starts leaner
    import pandas as pd

from kotone_pipeline.services.jobs import validate_cycle_id
from kotone_pipeline.services.tracker import (
    DEFAULT_PROJECT,
    PROJECT_ENV,
    TRACKER_MODES,
    ArtifactSpec,
    RunLink,
    Tracker,
    TrackerMode,
    TrackerRun,
    TrackerUnavailableError,
    _split_artifact_name,
    redact,
    tracker_mode_from_env,
    wandb_host,
)


class _DisabledRun(TrackerRun):
    """Validates what it is given (so bugs show in every mode) and stores nothing."""

    def _log_metrics(self, values: dict[str, int | float]) -> None:
        pass

    def _log_table(self, name: str, frame: pd.DataFrame) -> None:
        pass

    def _log_summary(self, values: dict[str, Any]) -> None:
        pass

    def _log_artifact(self, spec: ArtifactSpec) -> str | None:
        return None

    def _use_artifact(self, name: str, type: str, like: ArtifactSpec | None) -> None:
        pass

    def _finish(self, exit_code: int) -> RunLink:
        return RunLink(mode="disabled")


class _WandbRun(TrackerRun):
    def __init__(
        self, sdk: Any, run: Any, mode: TrackerMode, logged: dict[tuple[str, str], ArtifactSpec] | None = None
    ) -> None:
        super().__init__()
        self._sdk = sdk
        self._run = run
        self._mode = mode
        # (name, alias) -> what was logged under it by any run of the same tracker; offline this is the
        # only way to resolve a name, as there is no server to ask.
        self._logged = {} if logged is None else logged

    def _log_metrics(self, values: dict[str, int | float]) -> None:
        self._run.log(values)

    def _log_table(self, name: str, frame: pd.DataFrame) -> None:
        self._run.log({name: self._sdk.Table(dataframe=frame)})

    def _log_summary(self, values: dict[str, Any]) -> None:
        self._run.summary.update(values)

    def _log_artifact(self, spec: ArtifactSpec) -> str | None:
        logged = self._run.log_artifact(spec.to_wandb(self._sdk), aliases=list(spec.aliases))
        for alias in (*spec.aliases, "latest"):
            self._logged[(spec.name, alias)] = spec
        if self._mode == "online":
            # Wait for the commit, so that the version is known and the next run can use it by name.
            logged.wait()
            self._logged[_split_artifact_name(logged.name)] = spec
            return str(logged.name)
        return f"{spec.name}:{spec.aliases[0] if spec.aliases else 'latest'}"

    def _use_artifact(self, name: str, type: str, like: ArtifactSpec | None) -> None:
        if self._mode == "online":
            self._run.use_artifact(name, type=type)
            return
        key = _split_artifact_name(name)
        spec = self._logged.get(key)
        if spec is None and like is not None and like.name == key[0]:
            spec = like
        if spec is None:
            # Offline there is no server to resolve a name this tracker did not log; keep the intent in
            # the summary instead of failing the cycle over bookkeeping.
            self._run.summary.update({f"used_artifacts/{type}": name})
            return
        if spec.type != type:
            raise ValueError(f"artifact {name} has type {spec.type!r}, not {type!r}")
        # wandb refuses use_artifact offline. Its own online path for a draft artifact does exactly this:
        # log the same content (same digest, so the same version) marked use_after_commit, which `wandb sync`
        # turns into "this run used that version". Only the alias the caller named is re-asserted (plus
        # 'latest', which wandb always adds), so 'champion' never moves back to an older version.
        self._run._log_artifact(spec.to_wandb(self._sdk), aliases=[key[1]], is_user_created=True, use_after_commit=True)

    def _finish(self, exit_code: int) -> RunLink:
        run = self._run
        link = RunLink(
            mode=self._mode,
            run_id=run.id,
            url=run.url if self._mode == "online" else None,
            run_dir=str(Path(run.settings.sync_dir)) if self._mode == "offline" else None,
            project=run.project,
            entity=(run.entity or None) if self._mode == "online" else None,
            group=run.group,
            name=run.name,
        )
        run.finish(exit_code=exit_code)
        return link


def default_wandb_handle() -> dict[str, Any]:
    """The same shape as dagster-wandb's ``wandb_resource`` yields, built from the environment."""
    import wandb

    return {"sdk": wandb, "api": None, "host": wandb_host(os.environ)}


class WandbTracker(Tracker):
    """W&B runs; one run per asset materialization, grouped by cycle id.

    api_factory: returns the W&B handle to use online. In Dagster, pass dagster-wandb's
    ``wandb_resource`` value (``{"sdk": wandb, "api": ..., "host": ...}``, already logged in with the
    configured API key and host) so that authentication is configured in one place, e.g.
    ``WandbTracker("online", ..., api_factory=lambda: context.resources.wandb_resource)``.
    Without it the ``wandb`` module is used and reads ``WANDB_API_KEY`` / ``WANDB_BASE_URL`` itself.
    Offline mode ignores it: it never logs in and never needs a key.
    """

    def __init__(
        self,
        mode: TrackerMode,
        project: str,
        entity: str | None = None,
        root_dir: Path | str = ".",
        *,
        api_factory: Callable[[], Mapping[str, Any]] | None = None,
        init_timeout_s: float = 90.0,
    ) -> None:
        if mode not in TRACKER_MODES:
            raise ValueError(f"tracker mode {mode!r} is not one of {', '.join(TRACKER_MODES)}")
        self.mode = mode
        self.project = project
        self.entity = entity
        self.root_dir = Path(root_dir)
        self._api_factory = api_factory
        self._init_timeout_s = init_timeout_s
        self._logged_artifacts: dict[tuple[str, str], ArtifactSpec] = {}

    def start(self, cycle_id: str, name: str, job_type: str, config: Mapping[str, Any]) -> TrackerRun:
        validate_cycle_id(cycle_id)
        clean_config = redact(dict(config))
        if self.mode == "disabled":
            return _DisabledRun()
        if self.mode == "online" and self._api_factory is not None:
            handle = self._api_factory()
        else:
            handle = default_wandb_handle()
        sdk = handle["sdk"]
        host = handle.get("host") or wandb_host(os.environ)
        extra: dict[str, Any] = {}
        # When weave has been imported anywhere in the process, wandb.init calls weave.init for the
        # run's project, which logs in (an interactive prompt without a key) and needs the network.
        # Tracing is explicit here (weave_tracing.trace_evaluation), so that side door stays shut.
        os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
        if self.mode == "offline":
            # Belt and braces with settings(silent=True): child processes of this one stay quiet too.
            os.environ.setdefault("WANDB_SILENT", "true")
            # wandb stages logged tables under its data dir and `wandb sync` uploads them from there;
            # keeping it beside the runs makes the offline directory self-contained.
            os.environ.setdefault("WANDB_DATA_DIR", str(self.root_dir / "wandb" / "data"))
        else:
            extra["base_url"] = host
        settings = sdk.Settings(
            silent=True,
            console="off",  # stdout may carry anything; only what we log explicitly goes to W&B
            x_disable_stats=True,  # orchestration runs are short; system metrics are noise here
            init_timeout=self._init_timeout_s,
            **extra,
        )
        try:
            run = sdk.init(
                project=self.project,
                entity=self.entity if self.mode == "online" else None,
                group=cycle_id,
                job_type=job_type,
                name=name,
                config=clean_config,
                dir=str(self.root_dir),
                mode=self.mode,
                reinit="create_new",
                settings=settings,
            )
        except (sdk.errors.CommError, sdk.errors.UsageError) as exc:
            if self.mode != "online":
                raise
            raise TrackerUnavailableError(
                f"W&B unreachable at {host}: {exc}; set KOTONE_WANDB_MODE=offline to log locally"
            ) from exc
        return _WandbRun(sdk, run, self.mode, self._logged_artifacts)


def tracker_from_env(
    env: Mapping[str, str], home: Path, *, api_factory: Callable[[], Mapping[str, Any]] | None = None
) -> WandbTracker:
    """The tracker the pipeline uses: mode, project and entity from the environment; runs under home.

    api_factory: the online W&B handle (see ``WandbTracker``); the Dagster layer passes dagster-wandb's."""
    return WandbTracker(
        tracker_mode_from_env(env),
        project=env.get(PROJECT_ENV, "").strip() or DEFAULT_PROJECT,
        entity=env.get("WANDB_ENTITY", "").strip() or None,
        root_dir=home,
        api_factory=api_factory,
    )
