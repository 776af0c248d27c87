"""Why a run failed, in one line, from its event log: what the CLI prints instead of "see the run logs".

A step that raised is named with its error's last line. A run that failed with no step failure (its worker
was killed, run monitoring gave up on it, it was canceled) has its cause in the run's own events: the
failure's error or message, or, when the failure is Dagster's generic "marked as failed from outside",
the engine event just before it (the code server's "... was terminated by signal 9 (SIGKILL)").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import dagster as dg

# report_run_failed's default message: it says nothing about the cause, the engine event before it does.
GENERIC_FAILURE = "marked as failed from outside the execution context"
_FAILURE_PREFIX = re.compile(r"^(?:[\w.]+\.)?Failure: ")
# An engine event that explains an end (not "Started process for run", "Finished steps in process").
_CAUSE = re.compile(r"terminat|exited|kill|signal|interrupt|fail|crash|timed? ?out|exceed", re.IGNORECASE)


def error_line(error: object) -> str:
    """The last line of a SerializableErrorInfo's message (a ``dg.Failure`` without its class path)."""
    lines = [line for line in (getattr(error, "message", "") or "").strip().splitlines() if line.strip()]
    return _FAILURE_PREFIX.sub("", lines[-1].strip()) if lines else "failed"


def step_failures(events: Iterable[dg.DagsterEvent]) -> list[str]:
    """``step: last line of its error`` for each failed step."""
    return [
        f"{event.step_key}: {error_line(event.step_failure_data.error)}"
        for event in events
        if event.is_step_failure and event.step_failure_data.error is not None
    ]


def _message(event: dg.DagsterEvent) -> str:
    error = getattr(event.event_specific_data, "error", None)
    if error is not None:
        return error_line(error)
    return (event.message or "").strip()


def failure_cause(events: Iterable[dg.DagsterEvent]) -> str | None:
    """The run's failure (or cancellation) as its event log explains it; None when it says nothing."""
    ordered = list(events)
    ends = [
        i
        for i, e in enumerate(ordered)
        if e.event_type in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
    ]
    if not ends:
        return None
    end = ends[-1]
    message = _message(ordered[end])
    if message and GENERIC_FAILURE not in message:
        return message.splitlines()[0]
    for event in reversed(ordered[:end]):
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT and _CAUSE.search(_message(event)):
            return _message(event).splitlines()[0]
        if event.is_step_event:  # steps ran after any engine event that could explain it
            break
    return message.splitlines()[0] if message else None


def explain(events: Iterable[dg.DagsterEvent]) -> str:
    """Each failed step, else the run's own cause, else where to look."""
    ordered = list(events)
    return "; ".join(step_failures(ordered) or [failure_cause(ordered) or "see the run's logs in the UI (kotone dev)"])


def run_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEvent]:
    return [r.dagster_event for r in instance.all_logs(run_id) if r.dagster_event is not None]
