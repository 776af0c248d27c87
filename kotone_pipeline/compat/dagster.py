"""Dagster internals the project uses, with no public equivalent in the pinned 1.13.27.

- cron helpers: the nightly sensor's latest completed tick, and checking a cron string like Dagster does;
- tick records: the workflow log reads sensor ticks (``TickStatus``, ``InstigatorType``).

Headless cycles need none: they run through ``dagster dev`` and the public GraphQL client
(``orchestration/driver.py``).
"""

from kotone_pipeline.compat import moved

try:
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus
    from dagster._utils.schedules import get_latest_completed_cron_tick, is_valid_cron_string
except ImportError as exc:  # pragma: no cover - only on an unsupported Dagster version
    raise moved("dagster", "1.13.27", "a private module the sensors or the workflow log use", exc) from exc

__all__ = ["InstigatorType", "TickStatus", "get_latest_completed_cron_tick", "is_valid_cron_string"]
