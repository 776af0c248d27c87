"""Reading HF Jobs (``HubJobReads``, a part of ``HfJobsBackend``): bounded-retry requests, listing jobs by labels,
and turning a ``JobInfo`` into the pipeline's ``JobState`` (cancelling a job stuck in SCHEDULING, adding the
log tail of a failed one)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from huggingface_hub import HfApi, JobInfo, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from kotone_pipeline.services.hf_common import (
    Redactor,
    RetryPolicy,
    describe_error,
    http_status,
    is_transient,
)
from kotone_pipeline.services.hf_job_records import (
    OutputTarget,
    attempt_of,
    flavor_of,
    has_labels,
    iso_or_none,
    running_s,
    scheduling_s,
)
from kotone_pipeline.services.jobs import (
    JobBackendError,
    JobState,
)

log = logging.getLogger(__name__)


class HubJobReads:
    """The reading half of ``HfJobsBackend``: it sets these attributes and the methods named below."""

    name: str
    api: HfApi
    endpoint: str
    retry: RetryPolicy
    redact: Redactor
    scheduling_limit_s: float
    log_tail_lines: int
    _log_tails: dict[str, str]
    _cancel_reasons: dict[str, str]

    @property
    def namespace(self) -> str:
        raise NotImplementedError

    def _need_token(self) -> str:
        raise NotImplementedError

    def price_per_hour(self, flavor: str | None) -> float:
        raise NotImplementedError

    def output_target(self, cycle_id: str, run_id: str) -> OutputTarget:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def logs_tail(self, job_id: str, lines: int = 50) -> str:
        raise NotImplementedError

    # -- reads ----------------------------------------------------------------------------------------------

    def _read(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Bounded retries on transient errors; every failure surfaces as a secret-free JobBackendError."""
        try:
            return self.retry.call(fn, *args)
        except JobBackendError:
            raise
        except RemoteEntryNotFoundError:
            raise  # the caller decides whether a missing file is an error
        except Exception as exc:
            raise JobBackendError(f"{what}: {describe_error(exc, self.redact)}", transient=is_transient(exc)) from None

    def _list(self, labels: dict[str, str]) -> list[tuple[JobInfo, dict[str, Any]]]:
        """Jobs with all these labels, oldest first, each with its raw JSON (for fields JobInfo drops).

        The request is the one ``HfApi.list_jobs`` sends, issued here so that our bounded retry is the only
        one: list_jobs' pagination retries every page up to five more times with waits of up to 8 s.
        """
        token = self._need_token()
        url = f"{self.endpoint}/api/jobs/{self.namespace}"
        params = [("label", f"{key}={value}") for key, value in labels.items()]
        headers = build_hf_headers(token=token)

        def fetch() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            next_url: str | None = url
            query: list[tuple[str, str]] | None = params
            while next_url is not None:
                response = get_session().get(
                    next_url, params=query, headers=headers, timeout=self.retry.request_timeout_s
                )
                hf_raise_for_status(response)
                items.extend(response.json())
                next_url = response.links.get("next", {}).get("url")
                query = None  # the next link carries the query
            return items

        raws = self._read(f"list jobs {labels}", fetch)
        jobs = [(JobInfo(**raw, endpoint=self.endpoint), raw) for raw in raws]
        # Checked here too: a job is only ever adopted or counted when its labels really match (a server that
        # ignored or mis-applied the filter must not make us adopt another run's job).
        jobs = [(info, raw) for info, raw in jobs if has_labels(info, labels)]
        return sorted(jobs, key=lambda pair: pair[0].created_at or datetime.min.replace(tzinfo=UTC))

    def _inspect(self, job_id: str) -> JobInfo | None:
        """The job, or None when the Hub does not know it (404)."""

        def fetch() -> JobInfo | None:
            try:
                return self.api.inspect_job(job_id=job_id, namespace=self.namespace, token=self._need_token())
            except HfHubHTTPError as exc:
                if http_status(exc) == 404:
                    return None
                raise

        return self._read(f"inspect job {job_id}", fetch)

    def _download(self, repo_id: str, filename: str, revision: str, cache_dir: str) -> str:
        return hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            endpoint=self.endpoint,
            token=self._need_token(),
        )

    # -- state mapping -----------------------------------------------------------------------------------

    def _observe(self, info: JobInfo, raw: dict[str, Any] | None) -> JobState:
        """The state for a sensor: cancels a job stuck in SCHEDULING, adds the log tail of a failed job."""
        stage = str(info.status.stage).upper()
        if stage == "SCHEDULING":
            waited = scheduling_s(info)
            if waited is not None and waited > self.scheduling_limit_s:
                return self._cancel_stuck(info, raw, waited)
        state = self._state(info, raw)
        if info.id in self._cancel_reasons and stage in ("CANCELED", "SCHEDULING"):
            state.message = self._cancel_reasons[info.id]
        if stage == "ERROR":
            state.message = self._with_log_tail(info.id, state.message)
        return state

    def _cancel_stuck(self, info: JobInfo, raw: dict[str, Any] | None, waited: float) -> JobState:
        reason = (
            f"cancelled by kotone: stuck in SCHEDULING for {waited:.0f}s "
            f"(limit {self.scheduling_limit_s:.0f}s, flavor {flavor_of(info)})"
        )
        state = self._state(info, raw)
        try:
            self.cancel(info.id)
        except JobBackendError as exc:
            state.message = f"stuck in SCHEDULING for {waited:.0f}s; cancel failed ({exc}), will retry"
            return state
        self._cancel_reasons[info.id] = reason
        state.stage = "CANCELED"
        state.message = reason
        state.finished_at = state.finished_at or datetime.now(UTC).isoformat(timespec="seconds")
        return state

    def _with_log_tail(self, job_id: str, message: str | None) -> str:
        if job_id not in self._log_tails:
            try:
                self._log_tails[job_id] = self.logs_tail(job_id, self.log_tail_lines)
            except JobBackendError as exc:
                return f"{message or 'job failed'}\n(log tail unavailable: {exc})"
        tail = self._log_tails[job_id]
        return f"{message or 'job failed'}\n--- last {self.log_tail_lines} log lines ---\n{tail}"

    def _state(self, info: JobInfo, raw: dict[str, Any] | None, *, adopted: bool = False) -> JobState:
        labels = info.labels or {}
        cycle_id = labels.get("kotone-cycle", "")
        run_id = labels.get("kotone-run", "")
        running = running_s(info)
        price = self.price_per_hour(flavor_of(info))
        # Where the job was told to write (its non-secret env), else where this configuration would put it.
        env = info.environment or {}
        if env.get("KOTONE_OUTPUT_REPO") and env.get("KOTONE_OUTPUT_REVISION"):
            output: str | None = f"{env['KOTONE_OUTPUT_REPO']}@{env['KOTONE_OUTPUT_REVISION']}"
        else:
            output = self.output_target(cycle_id, run_id).uri if cycle_id and run_id else None
        return JobState(
            job_id=info.id,
            cycle_id=cycle_id,
            run_id=run_id,
            backend=self.name,
            stage=str(info.status.stage).upper(),
            message=self.redact(info.status.message) if info.status.message else None,
            created_at=iso_or_none(info.created_at),
            started_at=iso_or_none(info.started_at),
            finished_at=iso_or_none(info.finished_at),
            running_s=running,
            cost_usd=round((running or 0.0) * price / 3600, 6),
            url=f"{self.endpoint}/jobs/{info.owner.name}/{info.id}",
            output_uri=output,
            adopted=adopted,
            attempt=attempt_of(info),
        )
