"""The compat modules are the only door to libraries' private modules, and what they wrap still works."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import kotone_pipeline

PRIVATE = re.compile(
    r"^\s*(from|import)\s+(dagster\._|huggingface_hub\._|huggingface_hub\.utils\._|wandb\.sdk)"
    r"|^\s*from\s+(dagster|huggingface_hub|wandb)(\.\w+)*\s+import\s+\(?\s*_",
    re.M,
)


def test_no_private_import_outside_the_compat_modules() -> None:
    root = Path(kotone_pipeline.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "compat" not in path.parts and PRIVATE.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_dagster_cron_helpers_answer_as_the_nightly_sensor_needs() -> None:
    from kotone_pipeline.compat.dagster import get_latest_completed_cron_tick, is_valid_cron_string

    assert is_valid_cron_string("0 2 * * *") and not is_valid_cron_string("every night")
    now = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
    tick = get_latest_completed_cron_tick("0 2 * * *", now, "UTC")
    assert (tick.day, tick.hour) == (7, 2)


def test_the_dagster_tick_names_are_the_classes_the_code_uses() -> None:
    from kotone_pipeline.compat import dagster as compat

    assert compat.TickStatus.SUCCESS.value == "SUCCESS" and compat.InstigatorType.SENSOR.value == "SENSOR"


def test_the_huggingface_client_factory_can_be_read_and_is_the_default_until_replaced() -> None:
    from kotone_pipeline.compat import huggingface

    assert isinstance(huggingface.DEFAULT_UV_IMAGE, str) and huggingface.DEFAULT_UV_IMAGE
    assert callable(huggingface.current_client_factory())
    assert callable(huggingface.hf_request_event_hook)


def test_the_wandb_service_error_is_an_exception_class() -> None:
    from kotone_pipeline.compat.wandb import wandb_api_failed_error

    assert issubclass(wandb_api_failed_error(), Exception)
