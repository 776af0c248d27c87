"""Dagster internals the project uses, with no public equivalent in the pinned 1.13.27.

- cron helpers: the nightly sensor's latest completed tick, and checking a cron string like Dagster does;
- tick records: the workflow log reads sensor ticks (``TickStatus``, ``InstigatorType``);
- config validation for the deployment's files (``deploy/``): an instance's dagster.yaml checked the way
  ``DagsterInstance`` loads it, and a configurable class's config (a run launcher's) against its schema.

Headless cycles need none: they run through ``dagster dev`` and the public GraphQL client
(``orchestration/driver.py``).
"""

from kotone_pipeline.compat import moved

try:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus
    from dagster._utils.schedules import get_latest_completed_cron_tick, is_valid_cron_string
except ImportError as exc:  # pragma: no cover - only on an unsupported Dagster version
    raise moved("dagster", "1.13.27", "a private module the sensors, the workflow log or deploy/ use", exc) from exc

__all__ = [
    "InstigatorType",
    "TickStatus",
    "dagster_instance_config",
    "get_latest_completed_cron_tick",
    "is_valid_cron_string",
    "process_config",
]
