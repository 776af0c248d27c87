"""Pytest fixtures and helpers for tests that drive the real huggingface_hub client against the stand-in.

Import the fixture into a test module (``from ...fixtures import hf_standin_fixture``); it is named
``hf_standin``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
from huggingface_hub import set_client_factory
from huggingface_hub.utils import _http as hf_http

from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.services.hf_common import RetryPolicy
from kotone_pipeline_tests.hf_standin.server import HubStandIn

USER = "kotone-bot"
TOKEN = "hf_fake-standin-token-not-a-secret-0123"
WANDB_KEY = "wandb-standin-secret-key-9876543210"
FAKE_TRAIN_SCRIPT = Path(__file__).with_name("fake_train.py")


def hf_cycle_env(home: Path, endpoint: str, **overrides: str) -> dict[str, str]:
    """The settings of a Dagster cycle on the stand-in: HF jobs and dataset store, LoRA trainer, the fake
    training script, W&B off; ``overrides`` (variable name -> value) on top."""
    return {
        "KOTONE_HOME": str(home),
        "KOTONE_JOB_BACKEND": "hf",
        "KOTONE_DATASET_STORE": "hf",
        "KOTONE_TRAINER": "lora",
        "KOTONE_HF_NAMESPACE": USER,
        "KOTONE_HF_DATASET_REPO": f"{USER}/kotone-data",
        "KOTONE_HF_FLAVOR": "cpu-basic",
        "KOTONE_HF_TRAINING_SCRIPT": str(FAKE_TRAIN_SCRIPT),
        "KOTONE_WANDB_MODE": "disabled",
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": TOKEN,
        **overrides,
    }


# Short waits and timeouts: faults resolve in milliseconds, a bound is reached in well under a second.
FAST_RETRY = RetryPolicy(attempts=3, initial_wait_s=0.01, max_wait_s=0.05, jitter_s=0.01, request_timeout_s=1.0)


@pytest.fixture(name="hf_standin")
def hf_standin_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    """A running stand-in (token ``TOKEN`` belongs to ``USER``); stopped, with its jobs, afterwards."""
    # Xet storage cannot be served by a stand-in: uploads must use plain LFS (read at call time).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    for name in ("HF_TOKEN", "WANDB_API_KEY", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    hub = HubStandIn({TOKEN: USER}).start()
    try:
        yield hub
    finally:
        hub.stop()
        # The clients under test give huggingface_hub's shared HTTP client short timeouts: undo that.
        set_client_factory(hf_http.default_client_factory)


def make_splits(n_train: int = 8, n_eval: int = 3) -> dict[str, list[Pair]]:
    """Small, valid splits with extreme values (0, 10), rule prompts with parts, and nested meta."""

    def pair(split: str, i: int) -> Pair:
        values = [(i + k * 3) % 11 for k in range(6)]
        rule = i % 2 == 1
        return Pair(
            id="",
            group_id=f"g-{split}-{i // 2}",
            source_type="rule_prompt" if rule else "request_text",
            text=f"{split} commission number {i}: a hushed, warm tune for a lantern-lit alley",
            vector=Vector.from_values(values),
            parts={"style": f"st{i}", "instrument": f"in{i}", "mood": "m1", "gimmick": "gm2"} if rule else None,
            origin="teacher",
            cycle="c1" if split == "train" else None,
            meta={"seed": i, "score": 0.25 * i, "tags": ["a", "b"]},
        )

    counts = {
        "train": n_train,
        "validation": n_eval,
        "test": n_eval,
        "holdout": n_eval,
        "probe": n_eval,
        "human": n_eval,
    }
    return {split: [pair(split, i) for i in range(n)] for split, n in counts.items()}


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; its value, or AssertionError after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
