"""The default timeout of a LoRA training job, from the data size and the hardware flavor
(docs/design.md § External services).

    timeout_s = ceil(SAFETY * (setup_s + steps * step_s + ceil(predict_rows / batch) * batch_s + upload_s))
    steps     = min(max_steps, ceil(train_rows * epochs / (batch_size * grad_accum)))

rounded up to a whole minute and kept within [MIN_TIMEOUT_S, the backend's maximum]. ``setup_s`` covers
the uv environment (CUDA torch wheels), the base model download and loading; ``step_s`` is one optimizer
step of ``batch_size * grad_accum`` rows of ~250 tokens; ``batch_s`` one left-padded generation batch of
``JOB_PREDICT_BATCH`` rows of up to 48 new tokens. The GPU figures are estimates for the 3B default base
model in bf16 (to be replaced by ``scripts/gpu_check.sh`` measurements); the CPU figures are the tiny-model
phases of the ``lora_cpu_tiny_phase_s`` benchmark, rounded up, so a CPU smoke job never times out early.
Override with ``KOTONE_JOB_TIMEOUT_S``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SAFETY = 1.5
MIN_TIMEOUT_S = 600
JOB_PREDICT_BATCH = 16  # the training script's default (train_lora.JOB_PREDICT_BATCH)


@dataclass(frozen=True)
class FlavorSpeed:
    setup_s: float  # environment, base model download and load
    step_s: float  # one optimizer step (batch_size * grad_accum rows)
    batch_s: float  # one generation batch
    upload_s: float  # adapter, checkpoints, predictions


_GPU_SMALL = FlavorSpeed(setup_s=420, step_s=6.0, batch_s=4.0, upload_s=60)
SPEEDS: dict[str, FlavorSpeed] = {
    # CPU: the tiny test model (benchmark lora_cpu_tiny_phase_s on 2 cores, rounded up).
    "cpu-basic": FlavorSpeed(setup_s=120, step_s=8.0, batch_s=4.0, upload_s=30),
    "cpu-upgrade": FlavorSpeed(setup_s=90, step_s=5.0, batch_s=3.0, upload_s=30),
    "local": FlavorSpeed(setup_s=60, step_s=8.0, batch_s=4.0, upload_s=0),
    "t4-small": FlavorSpeed(setup_s=480, step_s=14.0, batch_s=9.0, upload_s=60),
    "t4-medium": FlavorSpeed(setup_s=480, step_s=14.0, batch_s=9.0, upload_s=60),
    "l4x1": FlavorSpeed(setup_s=420, step_s=8.0, batch_s=5.0, upload_s=60),
    "a10g-small": _GPU_SMALL,
    "a10g-large": _GPU_SMALL,
    "l40sx1": FlavorSpeed(setup_s=420, step_s=4.0, batch_s=3.0, upload_s=60),
    "a100-large": FlavorSpeed(setup_s=360, step_s=3.0, batch_s=2.0, upload_s=60),
    "h200": FlavorSpeed(setup_s=360, step_s=1.5, batch_s=1.5, upload_s=60),
}
LORA_DEFAULTS = {"epochs": 2, "batch_size": 2, "grad_accum": 8}


def optimizer_steps(train_rows: int, hparams: Mapping[str, Any], max_steps: int | None = None) -> int:
    per_step = int(hparams.get("batch_size", LORA_DEFAULTS["batch_size"])) * int(
        hparams.get("grad_accum", LORA_DEFAULTS["grad_accum"])
    )
    steps = math.ceil(max(train_rows, 1) * float(hparams.get("epochs", LORA_DEFAULTS["epochs"])) / max(per_step, 1))
    return min(steps, max_steps) if max_steps else steps


def default_job_timeout_s(
    flavor: str,
    train_rows: int,
    predict_rows: int,
    hparams: Mapping[str, Any] | None = None,
    *,
    max_steps: int | None = None,
    max_timeout_s: int = 6 * 3600,
) -> int:
    """The formula in the module docstring; an unknown flavor is timed as the slowest GPU."""
    speed = SPEEDS.get(flavor, SPEEDS["t4-small"])
    steps = optimizer_steps(train_rows, hparams or {}, max_steps)
    batches = math.ceil(max(predict_rows, 0) / JOB_PREDICT_BATCH)
    seconds = SAFETY * (speed.setup_s + steps * speed.step_s + batches * speed.batch_s + speed.upload_s)
    minutes = math.ceil(seconds / 60)
    return int(min(max(minutes * 60, MIN_TIMEOUT_S), max_timeout_s))
