"""Hugging Face Jobs backend (docs/design.md § Two worlds, § External services): one uv job per training run.

- ``submit`` looks the run up by its labels first and adopts what exists; a create that fails ambiguously
  (5xx, timeout) is reconciled by listing by labels, never retried blindly. A budget per cycle refuses a
  job whose worst case (timeout x hourly price) would exceed what the cycle has left.
- The job runs the training script from its pinned ``resolve/<dataset sha>/`` URL (published in the cycle's
  dataset commit) with ``uv run``; HF_TOKEN and WANDB_API_KEY travel only as job *secrets*.
- ``statuses`` makes one list request per sensor tick (all jobs with the project label), cancels jobs stuck
  in SCHEDULING past a limit, and puts the log tail of failed jobs into the message.
- The job writes its outputs to the model repo branch ``cycle-<id>-<run>``; ``fetch_outputs`` downloads
  them from the commit that branch points to.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, JobInfo
from huggingface_hub.errors import RemoteEntryNotFoundError

from kotone_pipeline.compat.huggingface import DEFAULT_UV_IMAGE
from kotone_pipeline.services.hf_common import (
    TRAINING_SCRIPT_PATH_IN_REPO,
    Redactor,
    RetryPolicy,
    describe_error,
    env_secrets,
    http_status,
    install_request_timeout,
    is_ambiguous,
    is_default_endpoint,
    is_transient,
    resolve_endpoint,
    resolve_token,
)
from kotone_pipeline.services.hf_job_reads import HubJobReads
from kotone_pipeline.services.hf_job_records import (
    ATTEMPT_LABEL,
    FLAVOR_PRICES_USD_PER_HOUR,
    OPTIONAL_OUTPUTS,
    REQUIRED_OUTPUTS,
    TIMEOUT_LABEL,
    OutputTarget,
    default_script_args,
    flavor_of,
    has_labels,
    is_timeout_message,
    running_s,
    submitted_timeout_s,
    timed_out,
)
from kotone_pipeline.services.jobs import (
    JobBackend,
    JobBackendError,
    JobSpec,
    JobState,
    is_terminal,
    validate_cycle_id,
    validate_run_id,
)
from kotone_pipeline.settings import default

log = logging.getLogger(__name__)

# Non-secret env names that look like credentials are refused: secrets go as job secrets only.
_SECRETISH = ("TOKEN", "SECRET", "PASSW", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE_KEY")


class BudgetExceededError(JobBackendError):
    """The run's worst-case cost does not fit in what the cycle has left; no job was created."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class HfJobsBackend(HubJobReads, JobBackend):
    name = "hf"

    def __init__(
        self,
        namespace: str = "",
        token: str | None = None,
        endpoint: str | None = None,
        *,
        flavor: str = default("hf_flavor"),
        scheduling_limit_s: float = default("hf_scheduling_limit_s"),
        budget_usd_per_cycle: float = default("hf_budget_usd"),
        max_timeout_s: int = 6 * 3600,
        output_repo: str | None = None,
        project: str = "kotone",
        image: str = DEFAULT_UV_IMAGE,
        script_path_in_repo: str = TRAINING_SCRIPT_PATH_IN_REPO,
        script_url_resolver: Callable[[JobSpec], str] | None = None,
        script_args: Callable[[JobSpec, OutputTarget], list[str]] = default_script_args,
        secret_source: Mapping[str, str] | None = None,
        prices: Mapping[str, float] | None = None,
        retry: RetryPolicy | None = None,
        create_settle_s: float | None = None,
        log_tail_lines: int = 50,
        max_attempts: int = 2,
        api: HfApi | None = None,
    ) -> None:
        self.endpoint = resolve_endpoint(endpoint or (api.endpoint if api is not None else None))
        self._token = resolve_token(token)
        self.api = api or HfApi(endpoint=self.endpoint, token=self._token)
        self._namespace = namespace
        self.flavor = flavor
        self.scheduling_limit_s = float(scheduling_limit_s)
        self.budget_usd_per_cycle = float(budget_usd_per_cycle)
        self.max_timeout_s = int(max_timeout_s)
        self._output_repo = output_repo
        self.project = project
        self.image = image
        self.script_path_in_repo = script_path_in_repo
        self.script_url_resolver = script_url_resolver or self._pinned_script_url
        self.script_args = script_args
        self._secret_source = secret_source
        self.prices = dict(prices or FLAVOR_PRICES_USD_PER_HOUR)
        self.retry = retry or RetryPolicy()
        # After a create with an unknown outcome, the request may still be processed server-side: for this
        # long, submit() of that run only looks the job up and never creates (in this process).
        self.create_settle_s = (
            2 * self.retry.request_timeout_s + 10 if create_settle_s is None else float(create_settle_s)
        )
        self._unsettled: dict[tuple[str, str], float] = {}
        self.log_tail_lines = log_tail_lines
        self.max_attempts = max(1, int(max_attempts))
        self.redact = Redactor([self._token, *env_secrets(dict(secret_source) if secret_source else None).values()])
        self._log_tails: dict[str, str] = {}
        self._cancel_reasons: dict[str, str] = {}
        install_request_timeout(self.retry.request_timeout_s)
        if flavor not in self.prices:
            raise ValueError(f"unknown flavor {flavor!r}: known flavors are {', '.join(sorted(self.prices))}")

    # -- configuration --------------------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        if not self._namespace:
            who = self._read("whoami", lambda: self.api.whoami(token=self._need_token()))
            self._namespace = str(who["name"])
        return self._namespace

    @property
    def output_repo(self) -> str:
        return self._output_repo or f"{self.namespace}/{self.project}-runs"

    def output_target(self, cycle_id: str, run_id: str) -> OutputTarget:
        return OutputTarget(self.output_repo, f"cycle-{validate_cycle_id(cycle_id)}-{validate_run_id(run_id)}")

    def _need_token(self) -> str:
        if not self._token:
            raise JobBackendError("no Hugging Face token: set HF_TOKEN or pass token=", transient=False)
        return self._token

    def _pinned_script_url(self, spec: JobSpec) -> str:
        if spec.trainer != "lora":
            raise JobBackendError(
                f"run {spec.cycle_id}/{spec.run_id}: HF Jobs run the LoRA trainer (trainer='lora'), "
                f"got trainer={spec.trainer!r}; pass script_url_resolver= to run another script",
                transient=False,
            )
        ref = spec.dataset
        if ref.store != "hf":
            raise JobBackendError(
                f"HF Jobs need a dataset published to the Hub (got store {ref.store!r}); use the hf dataset store",
                transient=False,
            )
        return f"{self.endpoint}/datasets/{ref.name}/resolve/{ref.version}/{self.script_path_in_repo}"

    def price_per_hour(self, flavor: str | None) -> float:
        if flavor not in self.prices:
            log.warning("no price known for flavor %r: counting it as the most expensive one", flavor)
            return max(self.prices.values())
        return self.prices[flavor]

    def prepare_cycle(self, cycle_id: str) -> dict[str, Any]:
        """Prices refreshed from ``list_jobs_hardware`` once per cycle; on failure the table stays, with a note."""
        try:
            self.refresh_prices()
        except JobBackendError as exc:
            log.warning("cycle %s: prices not refreshed (%s); using the last known table", cycle_id, exc)
            return {
                "source": "table",
                "note": f"list_jobs_hardware failed ({exc}); budget computed from the last known prices",
                "flavor": self.flavor,
                "usd_per_hour": self.price_per_hour(self.flavor),
            }
        return {"source": "list_jobs_hardware", "flavor": self.flavor, "usd_per_hour": self.price_per_hour(self.flavor)}

    def refresh_prices(self) -> dict[str, float]:
        """Replace the price table with the Hub's current one (``list_jobs_hardware``)."""
        hardware = self._read("list hardware", lambda: self.api.list_jobs_hardware(token=self._need_token()))
        factor = {"second": 3600, "minute": 60, "hour": 1}
        for item in hardware:
            if item.unit_label in factor:
                self.prices[item.name] = float(item.unit_cost_usd) * factor[item.unit_label]
        return dict(self.prices)

    # -- JobBackend -----------------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobState:
        validate_cycle_id(spec.cycle_id)
        validate_run_id(spec.run_id)
        cycle_jobs = self._list({"kotone-project": self.project, "kotone-cycle": spec.cycle_id})
        mine = [(info, raw) for info, raw in cycle_jobs if has_labels(info, spec.labels(self.project))]
        key = (spec.cycle_id, spec.run_id)
        attempt = 1
        if mine:
            # Adopt the live job, or a finished one: a failed run is retried under a new run id, except a run
            # whose last job hit its timeout, which is submitted again (it resumes from its checkpoint).
            self._unsettled.pop(key, None)
            live = [(info, raw) for info, raw in mine if not is_terminal(str(info.status.stage))]
            if live:
                self._cancel_duplicates(live)
                return self._state(*live[0], adopted=True)
            if len(mine) >= self.max_attempts or not timed_out(mine[-1][0]):
                return self._state(*mine[-1], adopted=True)
            attempt = len(mine) + 1
            log.warning(
                "run %s/%s: job %s hit its timeout; submitting attempt %d, which resumes from its checkpoint",
                spec.cycle_id,
                spec.run_id,
                mine[-1][0].id,
                attempt,
            )
        since = self._unsettled.get(key)
        if since is not None and time.monotonic() - since < self.create_settle_s:
            raise JobBackendError(
                f"an earlier create for {spec.cycle_id}/{spec.run_id} has an unknown outcome and no job is "
                f"visible yet; not creating another within {self.create_settle_s:.0f}s of it",
                transient=True,
            )
        self._check_timeout(spec)
        self._check_budget(spec, cycle_jobs)
        self._check_env(spec)
        output = self.output_target(spec.cycle_id, spec.run_id)
        script_url = self.script_url_resolver(spec)
        self._prepare_output(output)
        try:
            info = self._create(spec, output, script_url, attempt)
        except Exception as exc:
            if http_status(exc) is not None and not is_ambiguous(exc):
                raise JobBackendError(
                    f"HF Jobs refused the job for {spec.cycle_id}/{spec.run_id}: {describe_error(exc, self.redact)}",
                    transient=is_transient(exc),
                ) from None
            return self._reconcile_after_failed_create(spec, exc, attempt)
        return self._state(info, None)

    def resubmits(self, state: JobState) -> bool:
        """A job that hit its timeout, with attempts left: its run resumes from its checkpoint in a new job."""
        # The first line is the Hub's status message; the log tail follows it (and may mention anything).
        timed_out = state.stage == "ERROR" and is_timeout_message((state.message or "").split("\n", 1)[0])
        return timed_out and state.attempt < self.max_attempts

    def find(self, cycle_id: str, run_id: str) -> JobState | None:
        labels = {"kotone-project": self.project, "kotone-cycle": cycle_id, "kotone-run": run_id}
        found = self._list(labels)
        return self._state(*found[0]) if found else None

    def jobs(self, cycle_id: str | None = None) -> list[JobState]:
        """Every job of the project (of one cycle when given), oldest first."""
        labels = {"kotone-project": self.project}
        if cycle_id is not None:
            labels["kotone-cycle"] = cycle_id
        return [self._state(info, raw) for info, raw in self._list(labels)]

    def statuses(self, job_ids: list[str]) -> dict[str, JobState]:
        """One list request (all jobs with the project label); ids unknown to it are inspected one by one,
        and ids the Hub does not know at all are left out of the answer."""
        wanted = set(job_ids)
        if not wanted:
            return {}
        listed = {info.id: (info, raw) for info, raw in self._list({"kotone-project": self.project})}
        result: dict[str, JobState] = {}
        for job_id in job_ids:
            if job_id in listed:
                info, raw = listed[job_id]
            else:
                found = self._inspect(job_id)
                if found is None:
                    continue
                info, raw = found, None
            result[job_id] = self._observe(info, raw)
        return result

    def cancel(self, job_id: str) -> None:
        self._read(
            f"cancel job {job_id}",
            lambda: self.api.cancel_job(job_id=job_id, namespace=self.namespace, token=self._need_token()),
        )

    def logs_tail(self, job_id: str, lines: int = 50) -> str:
        def fetch() -> list[str]:
            return list(
                self.api.fetch_job_logs(
                    job_id=job_id,
                    namespace=self.namespace,
                    follow=False,
                    tail=lines,
                    token=self._need_token(),
                )
            )

        return self.redact("\n".join(self._read(f"logs of job {job_id}", fetch)[-lines:]))

    def fetch_outputs(self, state: JobState, dest: Path) -> Path:
        """Download the run's outputs from the commit its output branch points to now (recorded in
        ``outputs_revision.txt`` beside them)."""
        if not state.output_uri:
            raise JobBackendError(f"job {state.job_id} has no output location", transient=False)
        target = OutputTarget.parse(state.output_uri)
        info = self._read(
            f"output revision {target.uri}",
            lambda: self.api.model_info(target.repo_id, revision=target.revision, token=self._need_token()),
        )
        sha = str(info.sha)
        dest = Path(dest).absolute()
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kotone-hf-outputs-") as cache:
            missing = []
            for name in (*REQUIRED_OUTPUTS, *OPTIONAL_OUTPUTS):
                try:
                    path = self._read(f"{name} of {target.uri}", self._download, target.repo_id, name, sha, cache)
                except RemoteEntryNotFoundError:
                    if name in REQUIRED_OUTPUTS:
                        missing.append(name)
                    continue
                tmp = dest / f".{name}.tmp"
                shutil.copyfile(path, tmp)
                tmp.replace(dest / name)
        if missing:
            raise JobBackendError(
                f"job {state.job_id}: {target.uri} (commit {sha}) lacks {', '.join(missing)}", transient=False
            )
        (dest / "outputs_revision.txt").write_text(f"{target.repo_id}@{sha}\n", encoding="utf-8")
        return dest

    # -- submission internals ----------------------------------------------------------------------------

    def _check_timeout(self, spec: JobSpec) -> None:
        if not 0 < spec.timeout_s <= self.max_timeout_s:
            raise JobBackendError(
                f"timeout {spec.timeout_s}s for {spec.cycle_id}/{spec.run_id} is outside 1..{self.max_timeout_s}s",
                transient=False,
            )

    def _check_env(self, spec: JobSpec) -> None:
        leaked = sorted(k for k in spec.env if any(word in k.upper() for word in _SECRETISH))
        if leaked:
            raise JobBackendError(
                f"env of {spec.cycle_id}/{spec.run_id} names secret-like variables {', '.join(leaked)}: "
                "secrets go to jobs as secrets only (HF_TOKEN, WANDB_API_KEY are passed automatically)",
                transient=False,
            )

    def _check_budget(self, spec: JobSpec, cycle_jobs: list[tuple[JobInfo, dict[str, Any]]]) -> None:
        """Spent (finished jobs) + committed (open jobs at their timeout) + this worst case <= budget."""
        committed = 0.0
        for info, _raw in cycle_jobs:
            price = self.price_per_hour(flavor_of(info))
            if is_terminal(info.status.stage):
                committed += (running_s(info) or 0.0) * price / 3600
            else:
                committed += max(submitted_timeout_s(info, self.max_timeout_s), running_s(info) or 0.0) * price / 3600
        worst = spec.timeout_s * self.price_per_hour(self.flavor) / 3600
        if committed + worst > self.budget_usd_per_cycle + 1e-9:
            raise BudgetExceededError(
                f"budget: run {spec.run_id} of cycle {spec.cycle_id} could cost up to ${worst:.2f} "
                f"({spec.timeout_s}s on {self.flavor} at ${self.price_per_hour(self.flavor):.2f}/h), "
                f"and the cycle has already spent or committed ${committed:.2f} "
                f"of ${self.budget_usd_per_cycle:.2f}; no job created"
            )

    def _prepare_output(self, output: OutputTarget) -> None:
        """Create the private output repo and the run's branch (both idempotent, so safe to retry)."""
        token = self._need_token()
        self._read(
            f"create {output.repo_id}",
            lambda: self.api.create_repo(output.repo_id, repo_type="model", private=True, exist_ok=True, token=token),
        )
        self._read(
            f"create branch {output.uri}",
            lambda: self.api.create_branch(
                output.repo_id, branch=output.revision, repo_type="model", exist_ok=True, token=token
            ),
        )

    def _job_env(self, spec: JobSpec, output: OutputTarget) -> dict[str, str]:
        env = dict(spec.env)
        env.update(
            {
                "KOTONE_PROJECT": self.project,
                "KOTONE_CYCLE": spec.cycle_id,
                "KOTONE_RUN": spec.run_id,
                "KOTONE_TRAINER": spec.trainer,
                "KOTONE_DATASET_REPO": spec.dataset.name,
                "KOTONE_DATASET_REVISION": spec.dataset.version,
                "KOTONE_OUTPUT_REPO": output.repo_id,
                "KOTONE_OUTPUT_REVISION": output.revision,
            }
        )
        if not is_default_endpoint(self.endpoint):
            env["HF_ENDPOINT"] = self.endpoint  # the job talks to the same Hub as we do
        return env

    def _job_secrets(self) -> dict[str, str]:
        secrets = env_secrets(dict(self._secret_source) if self._secret_source is not None else None)
        # The job reads the private dataset and writes its outputs with the token this backend uses.
        secrets["HF_TOKEN"] = self._need_token()
        for value in secrets.values():
            self.redact.add(value)
        return secrets

    def _create(self, spec: JobSpec, output: OutputTarget, script_url: str, attempt: int = 1) -> JobInfo:
        """One POST /api/jobs/{namespace}: ``uv run <pinned script URL> <args>`` (never retried here)."""
        labels = {**spec.labels(self.project), TIMEOUT_LABEL: str(int(spec.timeout_s))}
        if attempt > 1:
            labels[ATTEMPT_LABEL] = str(attempt)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*run_uv_job.*experimental")
            return self.api.run_uv_job(
                script_url,
                script_args=self.script_args(spec, output),
                image=self.image,
                env=self._job_env(spec, output),
                secrets=self._job_secrets(),
                flavor=self.flavor,
                timeout=int(spec.timeout_s),
                labels=labels,
                name=f"{self.project}-{spec.cycle_id}-{spec.run_id}" + (f"-a{attempt}" if attempt > 1 else ""),
                namespace=self.namespace,
                token=self._need_token(),
            )

    def _reconcile_after_failed_create(self, spec: JobSpec, exc: BaseException, attempt: int = 1) -> JobState:
        """The create may have worked: look the run (this attempt) up by its labels before anyone retries."""
        error = describe_error(exc, self.redact)
        labels = spec.labels(self.project) | ({ATTEMPT_LABEL: str(attempt)} if attempt > 1 else {})
        try:
            found = self._list(labels)
        except JobBackendError as list_error:
            self._unsettled[(spec.cycle_id, spec.run_id)] = time.monotonic()
            raise JobBackendError(
                f"job creation for {spec.cycle_id}/{spec.run_id} failed ({error}) "
                f"and the lookup by labels failed "
                f"too ({list_error}); the outcome is unknown, the next submit looks it up again",
                transient=True,
            ) from None
        if found:
            self._unsettled.pop((spec.cycle_id, spec.run_id), None)
            log.warning("create of %s/%s failed (%s) but the job exists: adopted", spec.cycle_id, spec.run_id, error)
            return self._state(*found[0], adopted=True)
        if is_ambiguous(exc):
            self._unsettled[(spec.cycle_id, spec.run_id)] = time.monotonic()
        raise JobBackendError(
            f"job creation for {spec.cycle_id}/{spec.run_id} failed ({error}) and no job exists for the run; "
            "a later submit may try again",
            transient=is_transient(exc),
        ) from None

    def _cancel_duplicates(self, jobs: list[tuple[JobInfo, dict[str, Any]]]) -> None:
        """Two jobs for one run (a create answered late, seen from two processes): keep the oldest."""
        for info, _ in jobs[1:]:
            if is_terminal(str(info.status.stage)):
                continue
            run = (info.labels or {}).get("kotone-run")
            log.warning("run %s has a second job %s: cancelling it", run, info.id)
            try:
                self.cancel(info.id)
            except JobBackendError as exc:
                log.warning("could not cancel duplicate job %s: %s", info.id, exc)
