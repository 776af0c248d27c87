from __future__ import annotations

import pytest

from kotone_pipeline.domain.loop.job_timeout import MIN_TIMEOUT_S, SPEEDS, default_job_timeout_s, optimizer_steps
from kotone_pipeline.training import train_lora as script


def test_steps_follow_rows_epochs_and_the_effective_batch_and_stop_at_max_steps() -> None:
    hparams = {"epochs": 2, "batch_size": 2, "grad_accum": 8}
    assert optimizer_steps(1500, hparams) == 188  # ceil(1500 * 2 / 16)
    assert optimizer_steps(1500, hparams, max_steps=5) == 5


def test_the_production_default_no_longer_fits_in_30_minutes_and_is_derived_from_the_formula() -> None:
    # The review's case: ~1500 training rows, ~940 predictions on a10g-small.
    timeout = default_job_timeout_s("a10g-small", 1500, 940, script.DEFAULT_HPARAMS)
    speed = SPEEDS["a10g-small"]
    expected = 1.5 * (speed.setup_s + 188 * speed.step_s + 59 * speed.batch_s + speed.upload_s)
    assert timeout > 1800
    assert timeout == pytest.approx(expected, abs=60) and timeout % 60 == 0


def test_smaller_data_and_faster_flavors_get_shorter_timeouts_within_bounds() -> None:
    big = default_job_timeout_s("a10g-small", 1500, 940)
    assert default_job_timeout_s("a10g-small", 100, 100) < big
    assert default_job_timeout_s("h200", 1500, 940) < big
    assert default_job_timeout_s("cpu-basic", 8, 8, max_steps=2) == MIN_TIMEOUT_S
    assert default_job_timeout_s("a10g-small", 10**6, 10**6, max_timeout_s=7200) == 7200
    assert default_job_timeout_s("no-such-flavor", 1500, 940) == default_job_timeout_s("t4-small", 1500, 940)


def test_the_formula_uses_the_scripts_prediction_batch() -> None:
    from kotone_pipeline.domain.loop import job_timeout

    assert job_timeout.JOB_PREDICT_BATCH == script.JOB_PREDICT_BATCH
